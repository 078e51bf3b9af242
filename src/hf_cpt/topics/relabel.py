"""Topic labels for the web sources of a run (§3.2.1): LLM annotation where a source has none, small classifiers
trained on the labels, and the whole source labelled by them, each step resumable.

The paper has GPT-4 label a small sample of web pages zero-shot, trains TinyBERT (English) and a tiny Chinese
BERT on those labels, and lets the classifiers label the whole web corpus; stage 1 mixes the predicted topics.
`relabel_sources` does the same from one call, per source of `TopicClassifierConfig.taxonomies`:

1. **Labels to learn.** A source whose documents carry a topic column learns those (a sample of
   `train_documents`). A source without one, as in the released corpus, has a seeded sample of
   `annotate.documents` documents labelled by the LLM of `annotate` (`annotate_topics`, the Appendix B prompt);
   requests that failed are left out of training (and asked again by a run that still needs the classifier).
2. **Classifier.** `train_topic_classifier` on a stratified split of those labels.
3. **Labelling.** `label_topics` over every split of the source, sharded (and split across ranks), into a corpus
   folder `load_corpus(source_paths=...)` reads.

A run killed at any point redoes only what it had not finished: answered annotation requests are records on
disk, a classifier with its `metrics.json` is finished, labelling resumes from its finished shards, and a
labelled split already written for this classifier is not written again (so the prepared corpus built from it
keeps its key and is not tokenised again).

Output folder `output_dir/topic_labels/`:
    annotation/<source>/      the LLM's records and `annotation_report.json` (annotated sources only)
    classifiers/<source>/     the classifier (weights, `metrics.json`, confusion matrix, model card)
    shards/<source>/<split>/  finished labelling shards
    written/<source>.<split>.json   which classifier wrote a labelled split
    data/<source>/<split>-00000-of-00001.parquet   the documents with the predicted topics
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from accelerate import PartialState
from datasets import Dataset, load_dataset

from hf_cpt.data.sources import load_source
from hf_cpt.generation.base import load_configured_backend
from hf_cpt.topics.annotate import REPORT_FILE, annotate_topics
from hf_cpt.topics.classifier import train_topic_classifier
from hf_cpt.topics.labeling import label_topics
from hf_cpt.utils.io import atomic_path, write_text_atomically
from hf_cpt.utils.records import FAILED

if TYPE_CHECKING:
    from hf_cpt.run_config import TopicAnnotationConfig, TopicClassifierConfig

logger = logging.getLogger(__name__)

#: The column holding the LLM's labels in an annotated sample (`annotate_topics` writes it).
ANNOTATED_COLUMN = "topic"


def relabel_sources(
    settings: TopicClassifierConfig,
    dataset_path: str,
    output_dir: str | Path,
    text_column: str = "text",
    topic_column: str = "topic",
) -> tuple[str, dict[str, dict[str, Any]]]:
    """Train a topic classifier per web source, on its given topics or on an LLM's labels, and label the source.

    See the module docstring for the steps and the folder written under `output_dir/topic_labels`.

    Returns:
        the corpus folder of the labelled sources (for `load_corpus(source_paths=...)`), and per source its
        taxonomy, the classifier's held-out metrics, and either the agreement between predicted and given topics
        per split (a source with topics) or `annotation`, the LLM's report (an annotated source).
    """
    labels_dir = Path(output_dir) / "topic_labels"
    documents = {
        source: {
            split: load_source(dataset_path, source, split, text_column, required=split == "train")
            for split in ("train", "validation")
        }
        for source in settings.taxonomies
    }
    unfinished = [source for source in settings.taxonomies if not _classifier_finished(labels_dir, source)]
    untopical = [source for source in unfinished if topic_column not in documents[source]["train"].column_names]
    if untopical and settings.annotate is None:
        raise ValueError(
            f"Source {untopical[0]!r} has no {topic_column!r} column to train its topic classifier on; set "
            "topic_classifier.annotate so that an LLM labels a sample of it (§3.2.1), or give its documents topics."
        )
    annotated = _annotate(settings, documents, untopical, labels_dir, text_column)
    results = {}
    for source, taxonomy in settings.taxonomies.items():
        classifier_dir = labels_dir / "classifiers" / source
        given = topic_column in documents[source]["train"].column_names
        if source in unfinished:
            labelled, label_column = annotated.get(source), ANNOTATED_COLUMN
            if labelled is None:
                labelled, label_column = documents[source]["train"], topic_column
                if settings.train_documents:
                    labelled = labelled.shuffle(seed=0).select(range(min(settings.train_documents, len(labelled))))
            train_topic_classifier(
                labelled, taxonomy, settings.model_for(source), classifier_dir, text_column=text_column,
                label_column=label_column, test_size=settings.test_size, batch_size=settings.batch_size,
                max_length=settings.max_length, **settings.training_settings(source),
            )  # fmt: skip
        metrics = json.loads((classifier_dir / "metrics.json").read_text())
        agreement = {}
        for split, data in documents[source].items():
            if data is None:
                continue
            predicted = _labelled_split(data, source, split, labels_dir, settings, text_column, topic_column)
            if given:
                matches = zip(data[topic_column], predicted[topic_column], strict=True)
                agreement[split] = sum(a == b for a, b in matches) / len(data)
        entry = {"taxonomy": taxonomy, **metrics, "agreement": agreement}
        report = labels_dir / "annotation" / source / REPORT_FILE
        if not given and report.is_file():
            entry["annotation"] = json.loads(report.read_text())
        results[source] = entry
    return str(labels_dir), results


def _classifier_finished(labels_dir: Path, source: str) -> bool:
    """A classifier folder with its `metrics.json` is finished (`train_topic_classifier` writes it last)."""
    return (labels_dir / "classifiers" / source / "metrics.json").is_file()


def annotation_sample(dataset: Dataset, documents: int, seed: int) -> Dataset:
    """The documents an LLM labels: `documents` rows drawn without replacement by a generator seeded by `seed`, in
    corpus order; a pure function of the seed and the number of rows, so a rerun asks about the same documents."""
    rows = np.random.default_rng(seed).choice(len(dataset), size=min(documents, len(dataset)), replace=False)
    return dataset.select(np.sort(rows))


def _annotate(
    settings: TopicClassifierConfig,
    documents: dict[str, dict[str, Dataset | None]],
    sources: list[str],
    labels_dir: Path,
    text_column: str,
) -> dict[str, Dataset]:
    """The LLM-labelled sample of each of `sources`, without failed requests; one backend for all, freed after."""
    if not sources:
        return {}
    annotate: TopicAnnotationConfig = settings.annotate
    backend = load_configured_backend(
        annotate.backend, annotate.model, batch_size=annotate.batch_size, base_url=annotate.base_url
    )
    annotated = {}
    for source in sources:
        sample = annotation_sample(documents[source]["train"], annotate.documents, annotate.seed)
        labelled = annotate_topics(
            sample.select_columns([text_column]), backend, settings.taxonomies[source],
            labels_dir / "annotation" / source, text_column=text_column, max_chars=annotate.max_chars,
            seed=annotate.seed,
        )  # fmt: skip
        answered = labelled.filter(lambda match: match != FAILED, input_columns="topic_match")
        if len(answered) < len(labelled):
            logger.warning(
                "%s: %d of %d annotation requests failed; the classifier learns from the %d answered.",
                source, len(labelled) - len(answered), len(labelled), len(answered),
            )  # fmt: skip
        annotated[source] = answered.select_columns([text_column, ANNOTATED_COLUMN])
    del backend  # free a local labelling model before the classifiers train
    return annotated


def _labelled_split(
    data: Dataset,
    source: str,
    split: str,
    labels_dir: Path,
    settings: TopicClassifierConfig,
    text_column: str,
    topic_column: str,
) -> Dataset:
    """One split of a source with the classifier's topics in `topic_column`, written to the labelled corpus folder.

    A split the same classifier (same `metrics.json`) has written already is read back, not labelled and
    written again: rewriting would give the file a new fingerprint and the prepared corpus a new key.
    """
    classifier_dir = labels_dir / "classifiers" / source
    target = labels_dir / "data" / source / f"{split}-00000-of-00001.parquet"
    marker = labels_dir / "written" / f"{source}.{split}.json"
    stamp = {
        "classifier": hashlib.blake2b((classifier_dir / "metrics.json").read_bytes(), digest_size=16).hexdigest(),
        "documents": len(data),
    }
    if target.is_file() and marker.is_file() and json.loads(marker.read_text()) == stamp:
        logger.info("%s %s: labelled already by this classifier (%s).", source, split, target)
        return load_dataset("parquet", data_files=str(target), split="train")
    predicted = label_topics(
        data.remove_columns([column for column in (topic_column,) if column in data.column_names]),
        str(classifier_dir),
        text_column=text_column,
        max_length=settings.max_length,
        output_dir=labels_dir / "shards" / source / split,
    ).remove_columns("topic_probs")
    if topic_column != "topic":
        predicted = predicted.rename_column("topic", topic_column)
    if PartialState().is_main_process:
        with atomic_path(target) as temporary:
            predicted.to_parquet(str(temporary))
        write_text_atomically(marker, json.dumps(stamp))
    PartialState().wait_for_everyone()
    return predicted

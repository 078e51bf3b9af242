"""`label_topics`: label every document of a corpus with a topic classifier, fast, sharded and resumable.

This is the second half of §3.2.1: once a small classifier has learnt the LLM's labels, it labels the
whole web corpus, which is far too large for the LLM. Speed comes from length sorting: within a shard,
documents are sorted by token count and batched in that order, so a batch pads only up to its own
longest document; results go back to the original order. Scale comes from shards, as in
`score_perplexity`: under `torch.distributed` (`accelerate launch`, `torchrun`) rank r labels shards
r, r + world, ...; each finished shard's probabilities are written atomically under a key of the model,
tokenizer, data and settings fingerprints, so a killed run restarts where it stopped, and every rank
reads back all shards and returns the same labelled dataset.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import torch
from datasets import Dataset, List, Value
from tqdm.auto import tqdm
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from hf_cpt.topics.ngram_classifier import NgramClassifier, is_ngram_classifier
from hf_cpt.topics.probe_classifier import ProbeClassifier, is_probe_classifier
from hf_cpt.utils.environment import hardware_supports_bf16
from hf_cpt.utils.inference import eval_mode, pad_batch
from hf_cpt.utils.resumable import (
    ShardedPass,
    data_fingerprint,
    documents_of,
    model_fingerprint,
    tokenizer_fingerprint,
)

logger = logging.getLogger(__name__)

TOPIC_COLUMN, PROBS_COLUMN = "topic", "topic_probs"


#: Classifiers that take texts (`predict_proba(texts, batch_size)`), not token ids: they tokenize, if at all, alone.
TEXT_CLASSIFIERS = (NgramClassifier, ProbeClassifier)


def _load_classifier(
    classifier: PreTrainedModel | NgramClassifier | ProbeClassifier | str | os.PathLike[str],
    tokenizer: PreTrainedTokenizerBase | None,
) -> tuple[PreTrainedModel | NgramClassifier | ProbeClassifier, PreTrainedTokenizerBase | None]:
    """A loaded model is used where it is; a folder or Hub id is loaded onto this rank's GPU when there is one.

    An n-gram classifier needs no tokenizer and runs on the CPU, where hashing is the cost; a probe classifier
    brings its LM's tokenizer.
    """
    if isinstance(classifier, TEXT_CLASSIFIERS):
        return classifier, None
    if not isinstance(classifier, PreTrainedModel):
        if is_ngram_classifier(classifier):
            return NgramClassifier.from_pretrained(classifier), None
        if is_probe_classifier(classifier):
            return ProbeClassifier.from_pretrained(classifier), None
    if isinstance(classifier, PreTrainedModel):
        if tokenizer is None:
            raise ValueError("tokenizer is missing; pass the classifier's tokenizer along with a loaded classifier.")
        return classifier, tokenizer
    model = AutoModelForSequenceClassification.from_pretrained(classifier)
    if torch.cuda.is_available():
        model = model.to(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return model, tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(classifier)


@torch.inference_mode()
def _label_shard(
    model: PreTrainedModel,
    token_ids: Sequence[Sequence[int]],
    batch_size: int,
    pad_token_id: int,
    bf16: bool,
    progress: tqdm,
) -> np.ndarray:
    """Class probabilities (float32, documents x labels) of one shard, in the shard's order.

    Batches are runs of `batch_size` documents in length order: memory stays bounded by batch_size x
    max_length, as in a plain pipeline, while padding shrinks to the spread of lengths within a run.
    """
    order = np.argsort([len(ids) for ids in token_ids], kind="stable")
    probabilities = np.zeros((len(token_ids), model.config.num_labels), dtype=np.float32)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        input_ids, attention_mask = pad_batch([token_ids[document] for document in rows], pad_token_id)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
        probabilities[rows] = logits.float().softmax(dim=-1).cpu().numpy()
        progress.update(len(rows))
    return probabilities


def label_topics(
    dataset: Dataset,
    classifier: PreTrainedModel | NgramClassifier | ProbeClassifier | str | os.PathLike[str],
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    text_column: str = "text",
    batch_size: int = 64,
    max_length: int = 256,
    bf16: bool | None = None,
    shard_size: int = 4096,
    output_dir: str | os.PathLike[str] | None = None,
    show_progress: bool = True,
) -> Dataset:
    """`dataset` with a `topic` column (the most probable label name) and `topic_probs` (every label's
    probability, float32, in the classifier's class-id order), rows in their original order.

    Args:
        classifier: a folder or Hub id of a sequence classifier, an n-gram or a probe classifier (e.g. one
            written by `train_topic_classifier`), or a loaded model: a transformers one needs `tokenizer`, an
            `NgramClassifier` or `ProbeClassifier` none (they read documents up to their own `max_chars` or
            `max_length`, and ignore `max_length` and `bf16` here).
        tokenizer: default: the classifier's own.
        batch_size: documents per forward pass; batches hold documents of similar length.
        max_length: documents are truncated to this many tokens (use the classifier's training value).
        bf16: run the forward under bf16 autocast; default: where the hardware supports it.
        shard_size: documents per shard, the unit of work per rank and of resumption.
        output_dir: where finished shards are kept; default: a folder in the hf-cpt cache named by the
            fingerprints of classifier, tokenizer, data and settings, so an identical call reuses them.
        show_progress: a progress bar in documents on the main process.

    Existing `topic` / `topic_probs` columns are replaced (with a warning): the result always holds
    this classifier's labels.
    """
    texts, _ = documents_of(dataset, text_column)
    model, tokenizer = _load_classifier(classifier, tokenizer)
    id2label = {int(i): label for i, label in model.config.id2label.items()}
    if isinstance(model, TEXT_CLASSIFIERS):
        # The classifier's own truncation (max_chars, or the probe's max_length): max_length and bf16 do not apply.
        fingerprints = [model.fingerprint(), data_fingerprint(texts, dataset, text_column)]
        fingerprints.append({"shard_size": shard_size, "labels": id2label})
    else:
        bf16 = hardware_supports_bf16() if bf16 is None else bf16
        pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        settings = {"max_length": max_length, "bf16": bf16, "shard_size": shard_size, "labels": id2label}
        fingerprints = [
            model_fingerprint(model),
            tokenizer_fingerprint(tokenizer),
            data_fingerprint(texts, dataset, text_column),
            settings,
        ]
    shards = ShardedPass(len(texts), shard_size, fingerprints, output_dir, "labels", "Topic labels")
    progress = tqdm(
        total=shards.documents_todo(),
        unit="doc",
        desc="Labeling topics",
        disable=not show_progress or shards.rank != 0,
    )

    def label_shard(start: int, stop: int) -> np.ndarray:
        if isinstance(model, TEXT_CLASSIFIERS):
            probabilities = model.predict_proba(texts[start:stop], batch_size)
            progress.update(len(probabilities))
            return probabilities
        token_ids = tokenizer(list(texts[start:stop]), truncation=True, max_length=max_length)["input_ids"]
        return _label_shard(model, token_ids, batch_size, pad_token_id, bf16, progress)

    with eval_mode(model), progress:
        gathered = shards.run(label_shard)
    probabilities = np.concatenate(gathered) if gathered else np.zeros((0, len(id2label)), dtype=np.float32)
    replaced = [column for column in (TOPIC_COLUMN, PROBS_COLUMN) if column in dataset.column_names]
    if replaced:
        logger.warning("Replacing the existing %s column(s) with this classifier's labels.", replaced)
        dataset = dataset.remove_columns(replaced)
    topics = [id2label[int(i)] for i in probabilities.argmax(axis=1)]
    dataset = dataset.add_column(TOPIC_COLUMN, topics, feature=Value("string"))
    # An Arrow list array built from the flat buffer: converting row by row takes seconds per 100k documents.
    offsets = pa.array(np.arange(0, probabilities.size + 1, probabilities.shape[1], dtype=np.int32))
    column = pa.ListArray.from_arrays(offsets, pa.array(probabilities.ravel()))
    return dataset.add_column(PROBS_COLUMN, column, feature=List(Value("float32")))

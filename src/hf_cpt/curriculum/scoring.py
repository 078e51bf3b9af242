"""`score_perplexity`: per-document perplexity of a corpus under a causal LM, fast, sharded and resumable.

Per-document perplexity is exp(mean next-token NLL over the document), the first token excluded (it
has nothing to be predicted from). A document longer than the context is scored in windows of
`max_length` tokens advancing by `stride`: each window predicts only the tokens the previous one did
not, with the tokens before them as context, so every token counts once.

Speed comes from length bucketing: all windows of all documents are sorted by length and packed
into batches under a token budget, so a batch pads only up to its own longest window. Scale comes from
shards: documents are cut into shards of `shard_size`; under `torch.distributed` (e.g. `accelerate
launch`) rank r scores shards r, r + world, ...; each finished shard is written to disk atomically,
keyed by fingerprints of the model weights, the data and the scoring settings, so a killed run
restarts where it stopped and every rank reads back the whole array in the original order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from hf_cpt.utils.environment import hardware_supports_bf16
from hf_cpt.utils.inference import eval_mode, pad_batch
from hf_cpt.utils.resumable import ShardedPass, data_fingerprint, documents_of, model_fingerprint

logger = logging.getLogger(__name__)

_BUCKET_SPREAD, _BUCKET_SLACK = 1.05, 4  # how far a batch's window lengths may spread (ratio, tokens)


@dataclass(frozen=True)
class _Window:
    """One forward pass worth of a document: tokens [begin, end), predicting tokens [target, end)."""

    document: int
    begin: int
    end: int
    target: int


def document_windows(document: int, length: int, max_length: int, stride: int) -> list[_Window]:
    """Windows covering a document of `length` tokens so that each token after the first is predicted once."""
    windows = []
    predicted_up_to = 1  # token 0 is never predicted
    begin = 0
    while predicted_up_to < length:
        end = min(begin + max_length, length)
        windows.append(_Window(document, begin, end, max(predicted_up_to, begin + 1)))
        predicted_up_to = end
        begin += stride
    return windows


def length_buckets(lengths: Sequence[int], batch_tokens: int) -> Iterator[tuple[int, int]]:
    """Batches over sequences sorted by length, as (start, stop): a batch grows while its padded size
    (count x its last, longest length) fits the budget and its lengths stay within 5% (+ 4 tokens) of its
    first, which keeps padding under ~5% of the positions computed."""
    start = 0
    while start < len(lengths):
        stop = start + 1
        limit = lengths[start] * _BUCKET_SPREAD + _BUCKET_SLACK
        while stop < len(lengths) and (stop + 1 - start) * lengths[stop] <= batch_tokens and lengths[stop] <= limit:
            stop += 1
        yield start, stop
        start = stop


def _sequence_nll(logits: torch.Tensor, targets: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Summed NLL per row over the positions with a target, in float32.

    Only target positions are scored (not padding, not the context-only overlap of a window), a chunk of
    them at a time: a float32 copy of a whole batch's logits (positions x vocabulary) would be the
    largest allocation of the run.
    """
    flat_logits, flat_targets = logits.reshape(-1, logits.size(-1)), targets.reshape(-1)
    kept = flat_targets.ne(-100).nonzero().squeeze(1)
    nll = torch.cat(
        [
            F.cross_entropy(flat_logits[index].float(), flat_targets[index], reduction="none")
            for index in kept.split(chunk)
        ]
    )
    return torch.zeros(targets.size(0), dtype=torch.float64, device=nll.device).index_add_(
        0, kept // targets.size(1), nll.double()
    )


@torch.no_grad()
def _score_shard(
    model: PreTrainedModel,
    token_ids: list[list[int]],
    max_length: int,
    stride: int,
    batch_tokens: int,
    pad_token_id: int,
    bf16: bool,
    progress: tqdm | None,
) -> np.ndarray:
    """Perplexity of each document of one shard (length-bucketed windows, float64 sums)."""
    windows = [
        window
        for index, ids in enumerate(token_ids)
        for window in document_windows(index, len(ids), max_length, stride)
    ]
    windows.sort(key=lambda w: w.end - w.begin)
    nll = np.zeros(len(token_ids), dtype=np.float64)
    counted = np.zeros(len(token_ids), dtype=np.int64)
    device = next(model.parameters()).device
    for start, stop in length_buckets([window.end - window.begin for window in windows], batch_tokens):
        batch = windows[start:stop]
        input_ids, attention_mask = pad_batch(
            [token_ids[window.document][window.begin : window.end] for window in batch], pad_token_id
        )
        # A window predicts only its tokens from `target` on; the ones before it are context.
        context = torch.tensor([window.target - window.begin for window in batch])
        before_target = torch.arange(input_ids.size(1)) < context[:, None]
        labels = input_ids.masked_fill((attention_mask == 0) | before_target, -100)
        input_ids, attention_mask, labels = input_ids.to(device), attention_mask.to(device), labels.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        # Position t predicts token t + 1: shift the labels left, as the model's own loss does.
        targets = F.pad(labels, (0, 1), value=-100)[:, 1:]
        documents = np.array([window.document for window in batch])
        np.add.at(nll, documents, _sequence_nll(logits, targets).cpu().numpy())
        np.add.at(counted, documents, targets.ne(-100).sum(dim=1).cpu().numpy())
        if progress is not None:
            progress.update(int(attention_mask.sum()))
    return np.exp(nll / counted)


def score_perplexity(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase | None,
    data: Dataset | Sequence[str],
    text_column: str = "text",
    max_length: int | None = None,
    stride: int | None = None,
    batch_tokens: int = 8192,
    bf16: bool | None = None,
    shard_size: int = 4096,
    output_dir: str | Path | None = None,
    show_progress: bool = True,
) -> np.ndarray:
    """Perplexity of every document of `data` under `model`, in the order of `data`.

    Args:
        data: a `datasets.Dataset` with a `text_column`, or a list of strings. A column of token ids
            (e.g. `input_ids` of packed blocks) is scored as it is, without the tokenizer.
        max_length: tokens per forward pass; default: the model's context (`max_position_embeddings`).
        stride: how far consecutive windows of a long document advance; default `max_length // 2`
            (each predicted token then sees at least half a context).
        batch_tokens: token budget of a batch (batch size x its longest window); the batch's logits take
            batch_tokens x vocabulary x 2 bytes in bf16.
        bf16: run the forward under bf16 autocast; default: where the hardware supports it.
        shard_size: documents per shard, the unit of work per rank and of resumption.
        output_dir: where finished shards are kept; default: a folder in the hf-cpt cache named by the
            fingerprints of model, data and settings, so an identical call reuses them.
        show_progress: a progress bar in tokens on the main process.

    Returns:
        float64 array, one perplexity per document.
    """
    texts, tokenized = documents_of(data, text_column)
    empty = next((i for i, text in enumerate(texts) if len(text) == 0 or (not tokenized and not text.strip())), None)
    if empty is not None:
        raise ValueError(f"Document {empty} is empty; drop empty documents before scoring.")
    max_length = max_length or model.config.max_position_embeddings
    stride = stride or max(1, max_length // 2)
    if not 0 < stride <= max_length - 1:
        raise ValueError(f"stride is {stride}; set it between 1 and max_length - 1 ({max_length - 1}).")
    bf16 = hardware_supports_bf16() if bf16 is None else bf16
    pad_token_id = tokenizer.pad_token_id if tokenizer is not None and tokenizer.pad_token_id is not None else 0
    settings = {"max_length": max_length, "stride": stride, "bf16": bf16, "shard_size": shard_size}
    fingerprints = [
        model_fingerprint(model),
        data_fingerprint(texts, data if isinstance(data, Dataset) else None, text_column),
        settings,
    ]
    shards = ShardedPass(len(texts), shard_size, fingerprints, output_dir, "perplexity", "Perplexity")
    progress = tqdm(total=None, unit="tok", desc="Scoring perplexity", disable=not show_progress or shards.rank != 0)

    def score_shard(start: int, stop: int) -> np.ndarray:
        documents = list(texts[start:stop])
        token_ids = [list(ids) for ids in documents] if tokenized else tokenizer(documents)["input_ids"]
        short = next((i for i, ids in enumerate(token_ids) if len(ids) < 2), None)
        if short is not None:
            raise ValueError(
                f"Document {start + short} has fewer than 2 tokens, so nothing in it can be predicted; drop it."
            )
        scores = _score_shard(model, token_ids, max_length, stride, batch_tokens, pad_token_id, bf16, progress)
        if not np.all(np.isfinite(scores)):
            logger.warning("Shard starting at document %d has non-finite perplexities.", start)
        return scores

    with eval_mode(model), progress:
        return np.concatenate(shards.run(score_shard))

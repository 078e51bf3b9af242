"""Token negative log-likelihood of causal LMs, per sequence and per topic group.

Perplexity of a group is exp(total NLL / total predicted tokens): a token-weighted mean, so long and
short documents count by their tokens, and sums from several ranks combine exactly (a mean of
per-rank means would not). Perplexity depends on the tokenizer (Llama-3's 128k vocabulary makes fewer,
harder tokens than TinyLlama's 32k); bits per byte, total NLL / (ln 2 × the UTF-8 bytes of the text
predicted), does not, so runs with different tokenizers compare on it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from hf_cpt.linear_cross_entropy import (
    DEFAULT_CHUNK_SIZE,
    IGNORE_INDEX,
    head_reproduces_logits,
    output_head,
    sequence_nll_from_hidden,
)
from hf_cpt.utils.distributed import rank_and_world
from hf_cpt.utils.inference import eval_mode, pad_batch

logger = logging.getLogger(__name__)


def sequence_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token NLL and the number of predicted tokens, per sequence.

    `labels` are aligned with `logits` (position t predicts label t+1, as in transformers' causal-LM
    loss) and `-100` marks tokens that are not predicted. Computed in float32 whatever the logits dtype.
    """
    # Shift the labels, not the logits: slicing the logits would copy the largest tensor of the step.
    shift_labels = F.pad(labels, (0, 1), value=IGNORE_INDEX)[:, 1:]
    token_nll = F.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(shift_labels.shape)
    return token_nll.sum(dim=1), shift_labels.ne(IGNORE_INDEX).sum(dim=1)


@torch.no_grad()
def perplexity_by_group(
    model: torch.nn.Module,
    dataset: Dataset,
    group_names: Sequence[str],
    batch_size: int = 8,
    pad_token_id: int = 0,
    bf16: bool = False,
    chunk_size: int | None = DEFAULT_CHUNK_SIZE,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> dict[str, dict[str, float]]:
    """Validation perplexity per group of a dataset with `input_ids` and an integer `group` column.

    Documents are scored whole (each is at most one context long), in batches of similar length.
    Under `torch.distributed` each rank scores every world-size-th document and the NLL sums and token
    counts are all-reduced, so every rank returns the same table. With `bf16`, the forward runs under
    bf16 autocast, as mixed-precision training does; the NLL is summed in float64 either way.
    The model returns its last hidden states and the output embeddings are applied `chunk_size` positions
    at a time (see `hf_cpt.linear_cross_entropy`), so no batch-by-vocabulary logits exist; `None`, or a
    model whose head cannot stand for its logits, scores from the model's full logits.
    With the `tokenizer` that made `input_ids`, each document's predicted tokens (all but the first) are
    decoded, and their UTF-8 bytes give the group's bits per byte.

    Returns:
        `{group name: {"perplexity": ..., "nll": summed NLL, "tokens": predicted tokens}}` for every
        group with at least one predicted token; with a tokenizer also `"bytes"` and `"bits_per_byte"`.
    """
    rank, world = rank_and_world()
    device = next(model.parameters()).device
    lengths = [len(ids) for ids in dataset["input_ids"]]
    order = sorted(range(len(lengths)), key=lengths.__getitem__)[rank::world]
    nll = torch.zeros(len(group_names), dtype=torch.float64, device=device)
    tokens = torch.zeros(len(group_names), dtype=torch.float64, device=device)
    num_bytes = torch.zeros(len(group_names), dtype=torch.float64, device=device)
    head = output_head(model)[0] if chunk_size else None
    with eval_mode(model):
        for start in range(0, len(order), batch_size):
            rows = dataset[order[start : start + batch_size]]
            input_ids, attention_mask = pad_batch(rows["input_ids"], pad_token_id)
            labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
            input_ids, attention_mask, labels = input_ids.to(device), attention_mask.to(device), labels.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(bf16)):
                if head is not None:
                    outputs = model(
                        input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=-1, logits_to_keep=1
                    )
                    hidden = outputs.hidden_states[-1]
                    if head_reproduces_logits(outputs.logits, F.linear(hidden[:, -1:], head.weight, head.bias)):
                        seq_nll, seq_tokens = sequence_nll_from_hidden(
                            hidden, head.weight, labels, head.bias, chunk_size
                        )
                    else:
                        logger.warning(
                            "%s scales or caps its logits: scored from its full logits.", type(model).__name__
                        )
                        head = None
                if head is None:
                    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
                    seq_nll, seq_tokens = sequence_nll(logits, labels)
            group = torch.tensor(rows["group"], device=device)
            nll.index_add_(0, group, seq_nll.double())
            tokens.index_add_(0, group, seq_tokens.double())
            if tokenizer is not None:
                texts = tokenizer.batch_decode([ids[1:] for ids in rows["input_ids"]], skip_special_tokens=True)
                counts = [len(text.encode("utf-8")) for text in texts]
                num_bytes.index_add_(0, group, torch.tensor(counts, dtype=torch.float64, device=device))
    if world > 1:
        for total in (nll, tokens, num_bytes):
            dist.all_reduce(total)
    table = {}
    for i, name in enumerate(group_names):
        if tokens[i] > 0:
            mean_nll = (nll[i] / tokens[i]).item()
            table[name] = {"perplexity": math.exp(mean_nll), "nll": nll[i].item(), "tokens": tokens[i].item()}
            if tokenizer is not None and num_bytes[i] > 0:
                table[name]["bytes"] = num_bytes[i].item()
                table[name]["bits_per_byte"] = nll[i].item() / (math.log(2) * num_bytes[i].item())
    return table

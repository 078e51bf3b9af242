"""Running a model over batches without training it: token id lists padded into one batch, and eval mode meanwhile."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """`model` in eval mode (no dropout) inside the block, and back in the mode it was in after, also on errors.

    A model may be scored or asked in the middle of training (a callback, a curriculum re-scoring), so its mode
    is restored rather than left in eval.
    """
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def pad_batch(
    sequences: Sequence[Sequence[int]],
    pad_value: int,
    *,
    padding_side: Literal["right", "left"] = "right",
) -> tuple[torch.Tensor, torch.Tensor]:
    """`sequences` padded with `pad_value` to the longest one's length, and their attention mask (1 on real tokens).

    Args:
        sequences: token ids (lists, tuples, arrays or tensors) of each row.
        pad_value: what fills the padding: a pad token id, or -100 for labels.
        padding_side: `right` for scoring and classification (positions keep their index), `left` for generation
            (every row's continuation starts right after its own last token), as transformers' tokenizers name it.

    Returns:
        `(values, attention_mask)`, both `torch.long` of shape `(len(sequences), longest length)`, on the CPU.
    """
    width = max((len(sequence) for sequence in sequences), default=0)
    values = torch.full((len(sequences), width), pad_value, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        length = len(sequence)
        columns = slice(0, length) if padding_side == "right" else slice(width - length, width)
        values[row, columns] = torch.as_tensor(sequence, dtype=torch.long)
        attention_mask[row, columns] = 1
    return values, attention_mask

"""Next-token loss from the last hidden states, without a full-vocabulary logits tensor.

A causal LM's loss is cross-entropy over `hidden @ W.T (+ b)`, the output embeddings applied to the
last hidden state. At a 128k vocabulary that product is the largest tensor of a training step
(Llama-3, context 8,192: 4.2 GB per sequence in float32), and the usual loss keeps several copies of it
for the backward pass (the logits, their log-softmax, the gradients). Here the product is formed a chunk
of positions at a time:

- `linear_cross_entropy` (PyTorch, any device): the forward pass keeps only each position's
  log-sum-exp; the backward pass recomputes each chunk's logits, turns them into the gradient in place
  and folds it into the hidden-state and weight gradients. One chunk of logits is alive at a time, and
  the gradients are exact for any upstream gradient per token (a mean, a sum, weights per group).
- `liger_linear_cross_entropy`: Liger-Kernel's fused Triton kernel (GPU), with `reduction="none"`.

Both return the float32 NLL of every given position, so a caller can sum it per sequence or per group.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect

import torch
import torch.nn.functional as F
from torch import nn

from hf_cpt.utils.imports import missing_extra_error

IGNORE_INDEX = -100
DEFAULT_CHUNK_SIZE = 1024

# Per-token losses with exact gradients (`reduction="none"` recomputing its chunks in backward) came in 0.8.2;
# earlier versions scale precomputed gradients by a scalar and get a per-token upstream gradient wrong.
LIGER_MIN_VERSION = (0, 8, 2)

# Config fields of models that soft-cap their logits after the output embeddings (Gemma 2/3, RecurrentGemma, ...).
SOFTCAP_FIELDS = ("final_logit_softcapping", "logits_soft_cap", "logit_softcapping")


def _compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """The dtype a linear layer computes in here: autocast's when it is on for the tensor's device."""
    device_type = tensor.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return tensor.dtype


def _chunk_logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """float32 logits of a chunk, rounded through the compute dtype as the model's own head would round them."""
    return F.linear(hidden, weight, bias).float()


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Per-position NLL of `linear(hidden, weight, bias)` against `targets`, a chunk of positions at a time."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_size):
        dtype = _compute_dtype(hidden)
        with torch.autocast(hidden.device.type, enabled=False):
            cast_weight = weight.to(dtype)
            cast_bias = bias.to(dtype) if bias is not None else None
            log_normalizers = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
            nll = torch.empty_like(log_normalizers)
            for start in range(0, hidden.shape[0], chunk_size):
                rows = slice(start, start + chunk_size)
                logits = _chunk_logits(hidden[rows].to(dtype), cast_weight, cast_bias)
                target_logits = logits.gather(1, targets[rows, None]).squeeze(1)
                # log-sum-exp in place, so the chunk's logits are the only chunk-by-vocabulary buffer.
                maxima = logits.amax(dim=1)
                log_normalizers[rows] = maxima + logits.sub_(maxima[:, None]).exp_().sum(dim=1).log_()
                nll[rows] = log_normalizers[rows] - target_logits
                del logits
        ctx.save_for_backward(hidden, weight, bias, targets, log_normalizers)
        ctx.chunk_size, ctx.dtype = chunk_size, dtype
        return nll

    @staticmethod
    def backward(ctx, grad_nll):
        hidden, weight, bias, targets, log_normalizers = ctx.saved_tensors
        dtype, chunk_size = ctx.dtype, ctx.chunk_size
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if need_weight else None
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if need_bias else None
        with torch.autocast(hidden.device.type, enabled=False):
            cast_weight = weight.to(dtype)
            cast_bias = bias.to(dtype) if bias is not None else None
            for start in range(0, hidden.shape[0], chunk_size):
                rows = slice(start, start + chunk_size)
                chunk = hidden[rows].to(dtype)
                # d nll / d logits = softmax - one-hot, scaled by each position's upstream gradient; in place.
                grad_logits = _chunk_logits(chunk, cast_weight, cast_bias)
                grad_logits.sub_(log_normalizers[rows, None]).exp_()
                grad_logits[torch.arange(grad_logits.shape[0], device=grad_logits.device), targets[rows]] -= 1.0
                grad_logits.mul_(grad_nll[rows, None].float())
                grad_logits = grad_logits.to(dtype)
                if need_hidden:
                    grad_hidden[rows] = (grad_logits @ cast_weight).to(hidden.dtype)
                if need_weight and grad_weight.dtype == dtype:
                    grad_weight.addmm_(grad_logits.t(), chunk)
                elif need_weight:
                    grad_weight += grad_logits.t() @ chunk
                if need_bias:
                    grad_bias += grad_logits.sum(dim=0)
                del grad_logits
        return (
            grad_hidden,
            grad_weight.to(weight.dtype) if need_weight else None,
            grad_bias.to(bias.dtype) if need_bias else None,
            None,
            None,
        )


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    bias: torch.Tensor | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    """float32 NLL of each row of `hidden` (positions x hidden size) predicting `targets` (positions).

    The logits `hidden @ weight.T + bias` exist only `chunk_size` rows at a time (forward and backward), in
    autocast's dtype when autocast is on and rounded to float32 for the softmax, as a model's head computes
    them. Every target must be a valid class (select the predicted positions first).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size is {chunk_size}; set it to the number of positions per chunk (e.g. 1024).")
    return _ChunkedLinearCrossEntropy.apply(hidden, weight, bias, targets, chunk_size)


def liger_version() -> tuple[int, ...] | None:
    """The installed liger-kernel version as integers, or None when it is not installed."""
    if importlib.util.find_spec("liger_kernel") is None:
        return None
    release = importlib.metadata.version("liger-kernel").split("+")[0]
    return tuple(int(part) for part in release.split(".")[:3] if part.isdigit())


def check_liger_kernel() -> None:
    """Fail with one actionable sentence when liger-kernel is missing or too old for per-token losses."""
    version = liger_version()
    needed = ".".join(map(str, LIGER_MIN_VERSION))
    if version is None:
        raise missing_extra_error("liger_kernel", "leave use_liger_kernel unset")
    if version < LIGER_MIN_VERSION:
        raise ImportError(
            f"use_liger_kernel is set but liger-kernel {'.'.join(map(str, version))} is older than {needed}, the first "
            f"whose per-token losses have exact gradients; `pip install -U 'liger-kernel>={needed}'`."
        )


def liger_linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """`linear_cross_entropy` through Liger-Kernel's fused kernel (`reduction="none"`); float32 per-position NLL."""
    from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

    return liger_fused_linear_cross_entropy(hidden, weight, targets, bias, reduction="none").float()


def sequence_nll_from_hidden(
    hidden_states: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    bias: torch.Tensor | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    use_liger: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`hf_cpt.perplexity.sequence_nll` from the last hidden states (batch x length x hidden) and the head.

    Position t predicts label t+1 (transformers' causal-LM convention) and `-100` marks tokens not predicted;
    only predicted positions go through the head. Returns the summed NLL and the predicted tokens per sequence.
    """
    shift_labels = F.pad(labels, (0, 1), value=IGNORE_INDEX)[:, 1:]
    predicted = shift_labels.ne(IGNORE_INDEX)
    positions = predicted.reshape(-1).nonzero().squeeze(1)
    hidden = hidden_states.reshape(-1, hidden_states.shape[-1]).index_select(0, positions)
    targets = shift_labels.reshape(-1).index_select(0, positions)
    if use_liger:
        token_nll = liger_linear_cross_entropy(hidden, weight, targets, bias)
    else:
        token_nll = linear_cross_entropy(hidden, weight, targets, bias, chunk_size)
    rows = positions // labels.shape[1]
    nll = torch.zeros(labels.shape[0], dtype=token_nll.dtype, device=token_nll.device).index_add(0, rows, token_nll)
    return nll, predicted.sum(dim=1)


def output_head(model: nn.Module) -> tuple[nn.Linear | None, str]:
    """The output embeddings a loss can apply to `model`'s last hidden state itself, or None and why it cannot.

    `model` is a causal LM, or a PEFT model around one. That needs a plain `nn.Linear` head (not a LoRA or
    quantised layer, whose weight alone is not the map) whose weight is whole outside the forward (not a
    ZeRO-3 partition), a forward that takes `logits_to_keep` (so the model can skip its own full logits),
    and no soft-capping of the logits after the head. A model that rescales
    its logits some other way is caught by `head_reproduces_logits` at the first step.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if type(head) is not nn.Linear:
        return None, f"its output embeddings are {type(head).__name__}, not a torch.nn.Linear"
    if getattr(head.weight, "ds_shape", None) is not None:
        return None, "DeepSpeed ZeRO-3 partitions its output embeddings outside the model's forward"
    if "logits_to_keep" not in inspect.signature(type(base).forward).parameters:
        return None, f"{type(base).__name__}.forward takes no logits_to_keep"
    config = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
    for field in SOFTCAP_FIELDS:
        if getattr(config, field, None):
            return None, f"it soft-caps its logits ({field}={getattr(config, field)})"
    return head, ""


def head_reproduces_logits(logits: torch.Tensor, head_logits: torch.Tensor) -> bool:
    """True when the model's own logits equal the head applied to its hidden states, to the compute precision.

    `head_logits` is computed in the dtype the model computed in (bf16 under autocast), so the two agree to
    rounding unless the model transforms its logits after the head (a scale, a cap, a cut vocabulary).
    """
    if logits.shape != head_logits.shape:
        return False
    tolerance = max(4 * torch.finfo(head_logits.dtype).eps, 1e-4) * head_logits.float().abs().max()
    return bool((logits.float() - head_logits.float()).abs().max() <= tolerance)

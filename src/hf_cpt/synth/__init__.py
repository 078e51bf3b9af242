"""Synthetic QA (§3.3): prompts, LLM backends, parsing, filtering, the generator, and corruption (§4.2)."""

from hf_cpt.synth.backends import (
    BACKENDS,
    Completion,
    GenerationBackend,
    OpenAIBackend,
    SamplingParams,
    TransformersBackend,
    VLLMBackend,
    load_backend,
)
from hf_cpt.synth.corrupt import Edit, corrupt_dataset, corrupt_text
from hf_cpt.synth.filters import Decontaminator, FilterReport, exact_duplicates, filter_dataset, near_duplicates
from hf_cpt.synth.generator import SynthQAGenerator
from hf_cpt.synth.parsing import accept_rates, check_qa, parse_qa, validate_qa
from hf_cpt.synth.prompts import PROMPTS, code_qa_messages, scientific_qa_messages

__all__ = [
    "BACKENDS",
    "PROMPTS",
    "Completion",
    "Decontaminator",
    "Edit",
    "FilterReport",
    "GenerationBackend",
    "OpenAIBackend",
    "SamplingParams",
    "SynthQAGenerator",
    "TransformersBackend",
    "VLLMBackend",
    "accept_rates",
    "check_qa",
    "code_qa_messages",
    "corrupt_dataset",
    "corrupt_text",
    "exact_duplicates",
    "filter_dataset",
    "load_backend",
    "near_duplicates",
    "parse_qa",
    "scientific_qa_messages",
    "validate_qa",
]

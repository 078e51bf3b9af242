"""Synthetic QA (§3.3): prompts' use, parsing, deduplication, decontamination, the generator, and corruption (§4.2).

The LLM backends live in `hf_cpt.generation`; they are re-exported here, where synthesis scripts have always
imported them from.
"""

from hf_cpt.generation.base import BACKENDS, Completion, GenerationBackend, SamplingParams, load_backend
from hf_cpt.generation.openai import OpenAIBackend
from hf_cpt.generation.prompts import PROMPTS
from hf_cpt.generation.transformers import TransformersBackend
from hf_cpt.generation.vllm import VLLMBackend
from hf_cpt.synth.corrupt import Edit, corrupt_dataset, corrupt_text
from hf_cpt.synth.decontamination import Decontaminator
from hf_cpt.synth.dedup import exact_duplicates, near_duplicates
from hf_cpt.synth.filters import FilterReport, filter_dataset
from hf_cpt.synth.generator import SynthesisFailed, SynthQAGenerator
from hf_cpt.synth.parsing import accept_rates, check_qa, parse_qa, validate_qa
from hf_cpt.synth.pipeline import generate_for_recipe, snippets_per_discipline
from hf_cpt.synth.prompts import code_qa_messages, scientific_qa_messages

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
    "SynthesisFailed",
    "TransformersBackend",
    "VLLMBackend",
    "accept_rates",
    "check_qa",
    "code_qa_messages",
    "corrupt_dataset",
    "corrupt_text",
    "exact_duplicates",
    "filter_dataset",
    "generate_for_recipe",
    "load_backend",
    "near_duplicates",
    "parse_qa",
    "scientific_qa_messages",
    "snippets_per_discipline",
    "validate_qa",
]

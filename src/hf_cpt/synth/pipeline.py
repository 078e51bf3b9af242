"""Synthetic QA for a training run: seeds chosen per discipline, one backend, pairs ready to join a source."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from datasets import Dataset, load_dataset

from hf_cpt.data.bundled import demo_snippets_path
from hf_cpt.generation.base import load_configured_backend
from hf_cpt.synth.generator import SynthQAGenerator

if TYPE_CHECKING:
    from hf_cpt.run_config import SynthesisConfig


def snippets_per_discipline(snippets: Dataset, count: int | None) -> Dataset:
    """The first `count` snippets of each discipline, in file order (`None`: every snippet)."""
    if not count:
        return snippets
    seen: dict[str, int] = {}
    chosen = []
    for index, discipline in enumerate(snippets["discipline"]):
        seen[discipline] = seen.get(discipline, 0) + 1
        if seen[discipline] <= count:
            chosen.append(index)
    return snippets.select(chosen)


def generate_for_recipe(
    settings: SynthesisConfig, model_name_or_path: str | None, output_dir: str | Path
) -> dict[str, Any]:
    """Write QA pairs from science snippets with an LLM into `output_dir/synthetic_qa` (§3.3).

    Every process generates its share of the seeds, and a run in the same folder resumes where an earlier
    one stopped. The generating model is freed before this returns, so training gets the memory back.

    Args:
        settings: the snippets, backend and sampling.
        model_name_or_path: the model being trained, used when `settings.model` names none (`None`: the
            embedded default).
        output_dir: the run's folder.

    Returns:
        the generator's report, with the accepted pairs under `pairs` (a `Dataset`, for
        `load_corpus(extra_train={settings.source: ...})`) and the first of them under `sample`.
    """
    snippets = load_dataset("json", data_files=settings.snippets or demo_snippets_path(), split="train")
    snippets = snippets_per_discipline(snippets, settings.snippets_per_discipline)
    backend = load_configured_backend(
        settings.backend, settings.model or model_name_or_path, batch_size=settings.batch_size,
        base_url=settings.base_url,
    )  # fmt: skip
    generator = SynthQAGenerator(
        backend,
        Path(output_dir) / "synthetic_qa",
        sampling=settings.sampling,
        samples_per_seed=settings.samples_per_seed,
    )
    pairs = generator.generate(snippets)
    report = {**generator.report, "pairs": pairs, "sample": pairs[0] if len(pairs) else None}
    del backend, generator  # free the generating model before training
    return report

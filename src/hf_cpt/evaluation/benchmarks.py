"""The paper's evaluation suites (§4.1, Tables 5 and 6) as data.

Each benchmark names the lm-eval task that runs it, the shot count the paper reports, the metric to
read from lm-eval's results, and the paper's published scores, so that a run can be laid side by
side with Llama-3-8B and Llama-3-SynE without looking anything up. Benchmarks lm-eval 0.4.13 lacks
(SciEval, MAWPS) and the small bundled bilingual benchmark are task YAMLs in `tasks/`, loaded
through `TaskManager(include_path=TASKS_DIR)`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TASKS_DIR = Path(__file__).parent / "tasks"
"""The folder of task YAMLs this package ships; pass it as lm-eval's `include_path`."""

BASE_MODEL = "Llama-3-8B"
CPT_MODEL = "Llama-3-SynE"


@dataclass(frozen=True)
class Benchmark:
    """One benchmark of the paper: how lm-eval runs it and what the paper published for it.

    `paper_scores` holds the headline number of Tables 5/6 per model (percent). Where the table
    splits the benchmark (SciEval PHY / CHE / BIO next to its average), `paper_breakdown` keeps
    the sub-scores as `{label: {model: score}}` and `paper_scores` the table's average column.
    """

    name: str
    title: str
    suite: str
    num_fewshot: int
    task: str
    metric: str
    shipped: bool = False
    executes_code: bool = False
    paper_scores: Mapping[str, float] = field(default_factory=dict)
    paper_breakdown: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


def _paper(base: float, cpt: float) -> dict[str, float]:
    return {BASE_MODEL: base, CPT_MODEL: cpt}


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        # Table 5: major benchmarks.
        Benchmark("mmlu", "MMLU", "major", 5, "mmlu", "acc,none", paper_scores=_paper(66.60, 65.19)),
        Benchmark("ceval", "C-Eval", "major", 5, "ceval-valid", "acc,none", paper_scores=_paper(49.43, 58.24)),
        Benchmark("cmmlu", "CMMLU", "major", 5, "cmmlu", "acc,none", paper_scores=_paper(51.03, 57.34)),
        Benchmark("math", "MATH", "major", 5, "minerva_math", "exact_match,none", paper_scores=_paper(16.20, 28.20)),
        Benchmark(
            "gsm8k", "GSM8K", "major", 8, "gsm8k", "exact_match,flexible-extract", paper_scores=_paper(54.40, 60.80)
        ),
        Benchmark("asdiv", "ASDiv", "major", 8, "asdiv", "acc,none", paper_scores=_paper(72.10, 81.00)),
        Benchmark(
            "mawps",
            "MAWPS",
            "major",
            8,
            "hfcpt_mawps",
            "exact_match,flexible-extract",
            shipped=True,
            paper_scores=_paper(89.30, 94.10),
        ),
        Benchmark(
            "sat_math", "SAT-Math", "major", 5, "agieval_sat_math", "acc,none", paper_scores=_paper(38.64, 43.64)
        ),
        Benchmark(
            "humaneval",
            "HumanEval",
            "major",
            0,
            "humaneval",
            "pass@1,create_test",
            executes_code=True,
            paper_scores=_paper(36.59, 42.07),
        ),
        Benchmark(
            "mbpp", "MBPP", "major", 3, "mbpp", "pass_at_1,none", executes_code=True, paper_scores=_paper(47.00, 45.60)
        ),
        # Table 6: scientific benchmarks.
        Benchmark(
            "scieval",
            "SciEval",
            "scientific",
            5,
            "hfcpt_scieval",
            "acc,none",
            shipped=True,
            paper_scores=_paper(65.47, 69.60),
            paper_breakdown={"PHY": _paper(46.95, 53.66), "CHE": _paper(63.45, 67.81), "BIO": _paper(74.53, 77.45)},
        ),
        Benchmark("sciq", "SciQ", "scientific", 5, "sciq", "acc,none", paper_scores=_paper(90.90, 91.20)),
        Benchmark(
            "gaokao_mathqa",
            "GaoKao MathQA",
            "scientific",
            5,
            "agieval_gaokao_mathqa",
            "acc,none",
            paper_scores=_paper(27.92, 31.05),
        ),
        Benchmark(
            "gaokao_chemistry",
            "GaoKao CHE",
            "scientific",
            5,
            "agieval_gaokao_chemistry",
            "acc,none",
            paper_scores=_paper(32.85, 51.21),
        ),
        Benchmark(
            "gaokao_biology",
            "GaoKao BIO",
            "scientific",
            5,
            "agieval_gaokao_biology",
            "acc,none",
            paper_scores=_paper(43.81, 69.52),
        ),
        # Table 6 also prints the ARC average (84.51 and 86.28); each part is its own benchmark here.
        Benchmark("arc_easy", "ARC-Easy", "scientific", 0, "arc_easy", "acc,none", paper_scores=_paper(91.37, 91.58)),
        Benchmark(
            "arc_challenge",
            "ARC-Challenge",
            "scientific",
            0,
            "arc_challenge",
            "acc,none",
            paper_scores=_paper(77.73, 80.97),
        ),
        Benchmark(
            "aqua_rat", "AQUA-RAT", "scientific", 5, "agieval_aqua_rat", "acc,none", paper_scores=_paper(27.95, 28.74)
        ),
        # Written for this project: small, offline, for a quick check during training.
        Benchmark(
            "bilingual_en", "hf-cpt bilingual (en)", "bundled", 0, "hfcpt_bilingual_en", "acc,none", shipped=True
        ),
        Benchmark(
            "bilingual_zh", "hf-cpt bilingual (zh)", "bundled", 0, "hfcpt_bilingual_zh", "acc,none", shipped=True
        ),
    )
}

SUITES: dict[str, tuple[str, ...]] = {
    suite: tuple(b.name for b in BENCHMARKS.values() if b.suite == suite)
    for suite in ("major", "scientific", "bundled")
}
SUITES["paper"] = SUITES["major"] + SUITES["scientific"]


def resolve_benchmarks(benchmarks: Sequence[str | Benchmark] | str) -> list[Benchmark]:
    """Expand suite names and benchmark names, in order and without repeats; `Benchmark`s pass through.

    Raises ValueError naming the known suites and benchmarks when a name is neither, so a typo fails
    before any model is loaded.
    """
    names = [benchmarks] if isinstance(benchmarks, str) else list(benchmarks)
    if not names:
        raise ValueError("benchmarks is empty; name at least one suite or benchmark.")
    resolved: dict[str, Benchmark] = {}
    for name in names:
        if isinstance(name, Benchmark):
            resolved[name.name] = name
        elif name in SUITES:
            resolved.update((member, BENCHMARKS[member]) for member in SUITES[name])
        elif name in BENCHMARKS:
            resolved[name] = BENCHMARKS[name]
        else:
            raise ValueError(
                f"Unknown benchmark {name!r}; choose a suite ({', '.join(SUITES)}) "
                f"or a benchmark ({', '.join(BENCHMARKS)})."
            )
    return list(resolved.values())


def bundled_questions() -> list[str]:
    """The questions of the bundled benchmark (English and Chinese), e.g. to keep them out of synthetic data."""
    folder = TASKS_DIR / "hfcpt_bilingual"
    return [
        json.loads(line)["question"]
        for name in ("en.jsonl", "zh.jsonl")
        for line in (folder / name).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]

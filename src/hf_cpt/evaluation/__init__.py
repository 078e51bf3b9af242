"""lm-eval integration: the paper's benchmark suites with their shot counts, reports, a training callback.

lm-eval is an optional extra (`pip install 'hf-cpt[eval]'`); the suite table and the reports work
without it, and everything that runs a benchmark imports it when called.
"""

from __future__ import annotations

from hf_cpt.evaluation.benchmarks import (
    BENCHMARKS,
    SUITES,
    TASKS_DIR,
    Benchmark,
    bundled_questions,
    resolve_benchmarks,
)
from hf_cpt.evaluation.callback import EvaluationCallback
from hf_cpt.evaluation.reports import comparison_table, forgetting_report
from hf_cpt.evaluation.runner import EvaluationResult, evaluate

__all__ = [
    "BENCHMARKS",
    "SUITES",
    "TASKS_DIR",
    "Benchmark",
    "bundled_questions",
    "EvaluationCallback",
    "EvaluationResult",
    "comparison_table",
    "evaluate",
    "forgetting_report",
    "resolve_benchmarks",
]

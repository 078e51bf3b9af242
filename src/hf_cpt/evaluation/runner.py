"""Running the paper's benchmarks through lm-eval and keeping the scores in a JSON-safe result.

lm-eval sets one shot count per call, while the paper mixes 0-, 3-, 5- and 8-shot benchmarks, so
the benchmarks are grouped by shot count and each group is one `simple_evaluate` call on the same
loaded model. Scores are percentages, the unit of the paper's tables.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from hf_cpt.evaluation.benchmarks import BENCHMARKS, TASKS_DIR, Benchmark, resolve_benchmarks
from hf_cpt.utils.imports import missing_extra_error

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


@dataclass
class EvaluationResult:
    """Scores (percent) per benchmark, with what is needed to read them: shots, model, limit.

    `metrics` keeps every number lm-eval reported per benchmark (also percent where it is a
    fraction-valued metric such as accuracy; standard errors included) for a closer look.
    """

    scores: dict[str, float]
    num_fewshot: dict[str, int] = field(default_factory=dict)
    model: str = ""
    limit: int | float | None = None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict that strict JSON accepts: NaN scores (e.g. a metric lm-eval could not compute) become None."""
        data = asdict(self)
        data["scores"] = _json_safe(data["scores"])
        data["metrics"] = {name: _json_safe(values) for name, values in data["metrics"].items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvaluationResult:
        """Rebuild a result from `to_dict()` output (e.g. a saved `evaluation.json`)."""
        return cls(
            scores={k: float("nan") if v is None else float(v) for k, v in data["scores"].items()},
            num_fewshot=dict(data.get("num_fewshot", {})),
            model=str(data.get("model", "")),
            limit=data.get("limit"),
            metrics={k: dict(v) for k, v in data.get("metrics", {}).items()},
        )

    def standard_error(self, name: str) -> float | None:
        """The standard error lm-eval gave `name`'s score (percent), or None where it computed none.

        lm-eval reports it beside each metric as `<metric>_stderr,<filter>` (closed form for accuracies).
        """
        benchmark = BENCHMARKS.get(name)
        if benchmark is None:
            return None
        metric, _, filter_name = benchmark.metric.partition(",")
        value = self.metrics.get(name, {}).get(f"{metric}_stderr,{filter_name}")
        return value if value is not None and math.isfinite(value) else None

    def save(self, output_dir: str | os.PathLike[str]) -> Path:
        """Write `evaluation.json` into `output_dir` (created if needed) and return its path."""
        path = Path(output_dir) / "evaluation.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path


def _json_safe(values: Mapping[str, float]) -> dict[str, float | None]:
    return {k: v if math.isfinite(v) else None for k, v in values.items()}


def require_lm_eval() -> None:
    """Fail with the install command when the optional `eval` extra is missing."""
    try:
        import lm_eval  # noqa: F401
    except ImportError as error:
        raise missing_extra_error("lm_eval") from error


def _model_name(model: Any) -> str:
    if isinstance(model, (str, os.PathLike)):
        return str(model)
    return str(getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__)


def _check_model_path(model: str | os.PathLike[str]) -> None:
    """A string that cannot be a Hub id, or any string while the Hub is offline, must be a folder."""
    path = Path(model).expanduser()
    if path.is_dir():
        return
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    if offline or path.is_absolute() or str(model).startswith((".", "~")) or not _HUB_ID.match(str(model)):
        raise FileNotFoundError(
            f"Model folder {str(model)!r} does not exist; pass the folder of a saved model "
            "(config.json and weights) or a Hub model id."
        )


def _make_lm(
    model: Any, tokenizer: Any, batch_size: int | str, device: str | None, backend: Literal["hf", "vllm"]
) -> Any:
    """The lm-eval model wrapper: HFLM for a loaded model or a path, vLLM for a path only."""
    if backend == "vllm":
        if not isinstance(model, (str, os.PathLike)):
            raise ValueError("backend='vllm' needs a model folder or Hub id, not a loaded model; save it first.")
        try:
            from lm_eval.models.vllm_causallms import VLLM
        except ImportError as error:
            raise missing_extra_error("vllm", "use backend='hf'") from error
        return VLLM(pretrained=str(model), tokenizer=tokenizer, batch_size=batch_size)
    if backend != "hf":
        raise ValueError(f"backend={backend!r} is not supported; use 'hf' or 'vllm'.")
    from lm_eval.models.huggingface import HFLM

    if isinstance(model, (str, os.PathLike)):
        import torch

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return HFLM(pretrained=str(model), tokenizer=tokenizer, batch_size=batch_size, device=device)
    if tokenizer is None:
        raise ValueError("tokenizer is required when model is a loaded model; pass its tokenizer.")
    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


@functools.cache
def _task_manager(include_path: tuple[str, ...]) -> Any:
    """One task index per set of folders: indexing lm-eval's thousands of YAMLs takes seconds, and a
    callback evaluating every N steps would pay that each time."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(include_path))


def _percent(value: Any) -> float | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return float(value) * 100.0 if math.isfinite(value) else float("nan")


def evaluate(
    model: Any,
    benchmarks: Sequence[str | Benchmark] | str = "major",
    *,
    tokenizer: Any = None,
    batch_size: int | str = 8,
    limit: int | float | None = None,
    device: str | None = None,
    backend: Literal["hf", "vllm"] = "hf",
    output_dir: str | os.PathLike[str] | None = None,
    include_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    allow_code_execution: bool = False,
) -> EvaluationResult:
    """Run benchmarks (suites "major", "scientific", "paper", "bundled"; benchmark names; `Benchmark`s) on a model.

    `model` is a model folder, a Hub id, or an already-loaded `PreTrainedModel` (then `tokenizer` is
    required). Each benchmark runs at the paper's shot count. `limit` caps the examples per task
    (an int, or a fraction below 1) for quick checks. `include_path` adds folders of task YAMLs to
    the ones this package ships; a `Benchmark` of one's own can name a task there. HumanEval and
    MBPP execute model-written code, so they run only with `allow_code_execution=True`. The result
    is also written to `output_dir/evaluation.json` when `output_dir` is given.
    """
    selected = resolve_benchmarks(benchmarks)
    require_lm_eval()
    code = [b.title for b in selected if b.executes_code]
    if code and not allow_code_execution:
        raise ValueError(
            f"{' and '.join(code)} execute model-written code; pass allow_code_execution=True to run them "
            "(in a sandbox), or leave them out of benchmarks."
        )
    if isinstance(model, (str, os.PathLike)):
        _check_model_path(model)

    from lm_eval import simple_evaluate

    extra = [include_path] if isinstance(include_path, (str, os.PathLike)) else list(include_path or [])
    task_manager = _task_manager((str(TASKS_DIR), *map(str, extra)))
    lm = _make_lm(model, tokenizer, batch_size, device, backend)

    by_shots: dict[int, list[Benchmark]] = defaultdict(list)
    for benchmark in selected:
        by_shots[benchmark.num_fewshot].append(benchmark)
    if code:
        os.environ["HF_ALLOW_CODE_EVAL"] = "1"

    result = EvaluationResult(scores={}, model=_model_name(model), limit=limit)
    for shots, group in sorted(by_shots.items()):
        output = simple_evaluate(
            model=lm,
            tasks=[b.task for b in group],
            num_fewshot=shots,
            limit=limit,
            task_manager=task_manager,
            log_samples=False,
            # Any positive count makes lm-eval report standard errors; accuracies use the closed form, so
            # only bootstrapped metrics (none of the shipped benchmarks) pay for the iterations.
            bootstrap_iters=1000,
            confirm_run_unsafe_code=allow_code_execution,
        )
        if output is None:  # lm-eval returns None on non-zero ranks.
            continue
        for benchmark in group:
            raw = output["results"][benchmark.task]
            metrics = {k: p for k, v in raw.items() if "," in k and (p := _percent(v)) is not None}
            if benchmark.metric not in metrics:
                raise KeyError(
                    f"lm-eval reported no {benchmark.metric!r} for task {benchmark.task!r} "
                    f"(it reported {sorted(metrics)}); the task's metric_list must include it."
                )
            result.scores[benchmark.name] = metrics[benchmark.metric]
            result.num_fewshot[benchmark.name] = shots
            result.metrics[benchmark.name] = metrics
    if output_dir is not None:
        logger.info("Wrote %s", result.save(output_dir))
    return result

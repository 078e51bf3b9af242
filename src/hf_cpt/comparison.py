"""Several runs side by side, as the paper's Figs. 1-5 set its TinyLlama variants side by side.

`compare_runs` reads what the recipe left in each run folder, `evaluation_after.json` (benchmark scores after
CPT, `stages.run_benchmarks`) and `validation_perplexity.json` (per-group perplexity at each evaluation point,
`reporting.write_run_report`), and writes `comparison.md` (one table, a row per run) and `comparison.png`
(benchmark scores and per-source validation perplexity, bars per run) into one folder. The model before CPT,
where the first run measured it (`evaluation_before.json`, the `before` point), is the first row, as the
original TinyLlama is in the paper's figures.

The averages are §4.2's: "major" over C-Eval, CMMLU and MMLU; "scientific" over SciEval, SciQ and ARC (ARC
being the mean of ARC-Easy and ARC-Challenge, as in Appendix D), each where the run has all its members.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_cpt.reporting import bar_styles, markdown_table, perplexity_by_source

SCORES_NAME = "evaluation_after.json"
BASELINE_SCORES_NAME = "evaluation_before.json"
PERPLEXITY_NAME = "validation_perplexity.json"
TABLE_NAME = "comparison.md"
PLOT_NAME = "comparison.png"
BASELINE_ROW = "before CPT"

#: §4.2's averages: name -> members; a member that is a tuple is itself the mean of its parts (ARC).
AVERAGES: dict[str, tuple[str | tuple[str, ...], ...]] = {
    "major avg": ("ceval", "cmmlu", "mmlu"),
    "scientific avg": ("scieval", "sciq", ("arc_easy", "arc_challenge")),
}


@dataclass
class RunSummary:
    """One row of the comparison: a run's benchmark scores (percent) and per-source validation perplexity."""

    name: str
    scores: dict[str, float] = field(default_factory=dict)
    perplexity: dict[str, float] = field(default_factory=dict)

    def averages(self) -> dict[str, float]:
        """The §4.2 averages the run has every member of."""
        result = {}
        for name, members in AVERAGES.items():
            values = [self._member(member) for member in members]
            if all(value is not None for value in values):
                result[name] = sum(values) / len(values)
        return result

    def _member(self, member: str | tuple[str, ...]) -> float | None:
        parts = (member,) if isinstance(member, str) else member
        values = [self.scores.get(part) for part in parts]
        if any(value is None or math.isnan(value) for value in values):
            return None
        return sum(values) / len(values)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); run the recipe again to rewrite it.") from None


def _scores(path: Path) -> dict[str, float]:
    scores = _read_json(path).get("scores", {})
    return {name: float("nan") if value is None else float(value) for name, value in scores.items()}


def read_run(run_dir: str | Path) -> tuple[RunSummary, RunSummary | None]:
    """A run folder's summary after CPT, and the model before CPT where the run measured it (else None).

    The perplexity after CPT is the last evaluation point of `validation_perplexity.json` (after the last stage).
    """
    folder = Path(run_dir)
    scores_path, perplexity_path = folder / SCORES_NAME, folder / PERPLEXITY_NAME
    if not folder.is_dir() or not (scores_path.is_file() or perplexity_path.is_file()):
        raise FileNotFoundError(
            f"{folder} holds neither {SCORES_NAME} nor {PERPLEXITY_NAME}; give the output_dir of a finished recipe run."
        )
    tables = _read_json(perplexity_path) if perplexity_path.is_file() else {}
    after_points = [label for label in tables if label != "before"]
    after = RunSummary(
        folder.name,
        _scores(scores_path) if scores_path.is_file() else {},
        perplexity_by_source(tables[after_points[-1]]) if after_points else {},
    )
    baseline = None
    if (folder / BASELINE_SCORES_NAME).is_file() or "before" in tables:
        baseline = RunSummary(
            BASELINE_ROW,
            _scores(folder / BASELINE_SCORES_NAME) if (folder / BASELINE_SCORES_NAME).is_file() else {},
            perplexity_by_source(tables["before"]) if "before" in tables else {},
        )
    return after, baseline


def comparison_table(rows: Sequence[RunSummary]) -> str:
    """Markdown: a row per run; columns the benchmarks, the §4.2 averages, then `ppl <source>` per source."""
    benchmarks = sorted({name for row in rows for name in row.scores})
    averages = [name for name in AVERAGES if any(name in row.averages() for row in rows)]
    sources = sorted({source for row in rows for source in row.perplexity})

    def cell(value: float | None) -> str:
        return "-" if value is None or math.isnan(value) else f"{value:.2f}"

    body = [
        [row.name]
        + [cell(row.scores.get(name)) for name in benchmarks]
        + [cell(row.averages().get(name)) for name in averages]
        + [cell(row.perplexity.get(source)) for source in sources]
        for row in rows
    ]
    return markdown_table(["run", *benchmarks, *averages, *(f"ppl {source}" for source in sources)], body)


def plot_comparison(rows: Sequence[RunSummary], path: str | Path):
    """Grouped bars, one colour per run: benchmark scores with the averages (left), validation perplexity per
    source (right); a panel without data is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    metrics = sorted({name for row in rows for name in row.scores})
    metrics += [name for name in AVERAGES if any(name in row.averages() for row in rows)]
    if metrics:
        values = [{**row.scores, **row.averages()} for row in rows]
        panels.append(("Benchmarks (%)", metrics, values))
    sources = sorted({source for row in rows for source in row.perplexity})
    if sources:
        panels.append(("Validation perplexity", sources, [row.perplexity for row in rows]))
    if not panels:
        raise ValueError("The runs hold no benchmark scores and no validation perplexity; nothing to plot.")
    figure, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2), squeeze=False)
    styles = bar_styles(len(rows))
    width = 0.8 / len(rows)
    for ax, (title, labels, values) in zip(axes[0], panels, strict=True):
        for index, (row, row_values, style) in enumerate(zip(rows, values, styles, strict=True)):
            positions = [position + (index - (len(rows) - 1) / 2) * width for position in range(len(labels))]
            heights = [row_values.get(label, float("nan")) for label in labels]
            ax.bar(positions, heights, width=width, label=row.name, **style)
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return figure


def compare_runs(run_dirs: Sequence[str | Path], output_dir: str | Path) -> dict[str, Path]:
    """Write `comparison.md` and `comparison.png` for `run_dirs` (see the module docstring) into `output_dir`.

    Returns the paths written, by kind (`table`, `plot`). Run names are the folders' names; two runs of the same
    name are refused, since the table could not tell them apart.
    """
    if not run_dirs:
        raise ValueError("No run folder given; name the output_dir of one or more recipe runs.")
    rows, baseline = [], None
    for run_dir in run_dirs:
        after, before = read_run(run_dir)
        if any(row.name == after.name for row in rows):
            raise ValueError(
                f"Two runs are named {after.name!r} (their folders' names); give each run its own folder name."
            )
        rows.append(after)
        baseline = baseline or before
    rows = ([baseline] if baseline is not None else []) + rows
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    table_path, plot_path = output / TABLE_NAME, output / PLOT_NAME
    lines = [
        "# Runs compared",
        "",
        "Benchmark scores after CPT (percent), the §4.2 averages, and validation perplexity per source after the",
        "last stage.",
        "",
        comparison_table(rows),
        "",
        f"![comparison]({PLOT_NAME})",
        "",
    ]
    table_path.write_text("\n".join(lines), encoding="utf-8")
    plot_comparison(rows, plot_path)
    return {"table": table_path, "plot": plot_path}

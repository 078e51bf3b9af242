"""The CPU ablation of stage 1: the 2 : 8 Chinese : English mixture against a Chinese-only control.

The paper mixes English into Chinese adaptation so that the model learns Chinese without forgetting English
(§3.1, Table 5). This script shows that effect at laptop scale: it runs `recipes/llama3_syne.py` with
`configs/ablations/cpu_bilingual.yaml` (the embedded default's stage 1: SmolLM2-135M-Instruct, the bundled
corpus, 2 : 8) and `configs/ablations/cpu_chinese_only.yaml` (the same stage on Chinese only, same token
budget), then writes `report.md` in `--output_dir`: English and Chinese validation perplexity and the bundled
benchmark's English and Chinese accuracy, before and after, for both runs. Every figure is read from the runs'
own `validation_perplexity.json` and `evaluation_{before,after}.json`; each run keeps its full `report.md`.

    python recipes/ablation_cpu.py [--output_dir outputs/cpu-ablation] [--report_only]

A finished run is not retrained (the recipe skips a finished stage), and what it measured is read back. The
benchmark and the validation perplexity before CPT are measured once: both arms start from the same model.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hf_cpt.evaluation.reports import forgetting_report  # noqa: E402
from hf_cpt.reporting import markdown_table, perplexity_by_language  # noqa: E402
from hf_cpt.stages import MEASURED_DIR  # noqa: E402

CONFIGS = Path(__file__).parent / "configs" / "ablations"
#: Run folder name -> (label in the report, config).
RUNS = {
    "bilingual": ("Chinese : English = 2 : 8", CONFIGS / "cpu_bilingual.yaml"),
    "chinese_only": ("Chinese only (control)", CONFIGS / "cpu_chinese_only.yaml"),
}
#: Report column -> (language suffix of the sources, bundled benchmark of that language).
LANGUAGES = {"English": ("en", "bilingual_en"), "Chinese": ("cn", "bilingual_zh")}


def _recipe_main():
    """`main` of recipes/llama3_syne.py, which is a script beside this one, not a module of the package."""
    spec = importlib.util.spec_from_file_location("llama3_syne", Path(__file__).parent / "llama3_syne.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.main


def run_summary(run_dir: str | os.PathLike[str]) -> dict[str, dict[str, float]]:
    """Before and after one run: validation perplexity per language and bundled accuracy (percent) per language.

    "after" is the last point of the run's `validation_perplexity.json` (after its last stage).
    """
    run_dir = Path(run_dir)
    tables = json.loads((run_dir / "validation_perplexity.json").read_text(encoding="utf-8"))
    points = {"before": tables["before"], "after": tables[list(tables)[-1]]}
    summary = {}
    for point, table in points.items():
        perplexity = perplexity_by_language(table)
        scores = json.loads((run_dir / f"evaluation_{point}.json").read_text(encoding="utf-8"))["scores"]
        summary[point] = {}
        for name, (language, benchmark) in LANGUAGES.items():
            summary[point][f"{name} perplexity"] = perplexity[language]
            summary[point][f"{name} accuracy"] = scores[benchmark]
    return summary


def comparison_report(runs: Mapping[str, str | os.PathLike[str]]) -> str:
    """Markdown: one row per run label, English and Chinese validation perplexity and bundled accuracy before
    -> after, then each run's benchmark table with standard errors (`forgetting_report`)."""
    summaries = {label: run_summary(run_dir) for label, run_dir in runs.items()}
    columns = [f"{name} {kind}" for kind in ("perplexity", "accuracy") for name in LANGUAGES]
    rows = []
    for label, summary in summaries.items():
        cells = []
        for column in columns:
            before, after = summary["before"][column], summary["after"][column]
            cells.append(f"{before:.2f} → {after:.2f} ({after - before:+.2f})")
        rows.append([label, *cells])
    header = ["run", *(f"{column} (before → after)" for column in columns)]
    lines = [
        "# CPU ablation: stage 1's 2 : 8 mixture against Chinese only",
        "",
        "Validation perplexity is token-weighted over the sources of each language (lower is better); accuracy is",
        "the bundled bilingual benchmark's, in percent (higher is better).",
        "",
        markdown_table(header, rows),
    ]
    for label, run_dir in runs.items():
        evaluation = [
            json.loads(Path(run_dir, f"evaluation_{point}.json").read_text(encoding="utf-8"))
            for point in ("before", "after")
        ]
        lines += ["", f"## {label}: benchmarks", "", forgetting_report(*evaluation).rstrip()]
    return "\n".join(lines) + "\n"


def _share_before_evaluation(first: Path, run_dir: Path) -> None:
    """Give `run_dir` the first run's measurements before CPT (benchmarks, validation perplexity): both arms start
    from the same model, whose fingerprint the files record, so the recipe reads them back instead of measuring
    the same model twice."""
    for name in ("evaluation_before.json", f"{MEASURED_DIR}/validation_perplexity before.json"):
        source, target = first / name, run_dir / name
        if source.is_file() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", default="outputs/cpu-ablation", help="One folder per run, and report.md.")
    parser.add_argument("--report_only", action="store_true", help="Write report.md from finished runs only.")
    args = parser.parse_args(argv)
    output = Path(args.output_dir)
    runs = {label: output / folder for folder, (label, _) in RUNS.items()}
    if not args.report_only:
        recipe = _recipe_main()
        for folder, (_, config) in RUNS.items():
            _share_before_evaluation(output / next(iter(RUNS)), output / folder)
            recipe(["--config", str(config), "--output_dir", str(output / folder)])
    output.mkdir(parents=True, exist_ok=True)
    (output / "report.md").write_text(comparison_report(runs), encoding="utf-8")
    print((output / "report.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()

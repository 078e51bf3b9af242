"""The CPU ablation of stage 1 (recipes/ablation_cpu.py): its two configs and the report built from the runs."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from hf_cpt.data import MIXTURES, flatten_mixture
from hf_cpt.evaluation.runner import EvaluationResult
from hf_cpt.run_config import RecipeParser

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
STAGE1 = flatten_mixture(MIXTURES["llama3_syne_stage1"])


def ablation_module():
    spec = importlib.util.spec_from_file_location("ablation_cpu", RECIPES / "ablation_cpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def parse(name: str):
    return RecipeParser().parse_args_and_config(["--config", str(RECIPES / "configs" / "ablations" / name)])


def test_the_two_arms_differ_only_in_the_mixture_and_are_scored_on_the_same_sources():
    bilingual, bilingual_config = parse("cpu_bilingual.yaml")
    control, control_config = parse("cpu_chinese_only.yaml")
    [stage], [control_stage] = bilingual.stages, control.stages
    assert stage.ratios == pytest.approx(STAGE1)  # the embedded default's stage 1: 2 : 8
    chinese = {source: share for source, share in STAGE1.items() if source.endswith("-cn")}
    assert control_stage.ratios == pytest.approx({source: share / 0.2 for source, share in chinese.items()})
    assert stage.num_tokens == control_stage.num_tokens
    assert stage.overrides == control_stage.overrides
    assert sorted(bilingual.sources) == sorted(control.sources) == sorted(STAGE1)
    assert bilingual_config.learning_rate == control_config.learning_rate and bilingual_config.seed == 0
    assert bilingual.eval_benchmarks == control.eval_benchmarks == ["bundled"]


def write_run(folder: Path, tables: dict, scores: dict) -> None:
    """A finished recipe run's outputs as the recipe writes them: its perplexity tables and both evaluations."""
    folder.mkdir(parents=True)
    (folder / "validation_perplexity.json").write_text(json.dumps(tables))
    for point, values in scores.items():
        result = EvaluationResult(scores=values, metrics={name: {} for name in values}).to_dict()
        (folder / f"evaluation_{point}.json").write_text(json.dumps(result))


def entry(nll: float, tokens: int) -> dict:
    return {"nll": nll, "tokens": tokens, "perplexity": math.exp(nll / tokens)}


def test_the_report_is_built_from_each_runs_json(tmp_path):
    module = ablation_module()
    before = {"web-en/Law": entry(200.0, 100), "book-en": entry(100.0, 100), "web-cn/Arts": entry(300.0, 100)}
    after = {"web-en/Law": entry(180.0, 100), "book-en": entry(60.0, 100), "web-cn/Arts": entry(200.0, 100)}
    write_run(
        tmp_path / "a",
        {"before": before, "after stage1": after},
        {"before": {"bilingual_en": 60.0, "bilingual_zh": 40.0}, "after": {"bilingual_en": 62.5, "bilingual_zh": 45.0}},
    )
    control_after = {"web-en/Law": entry(260.0, 100), "book-en": entry(140.0, 100), "web-cn/Arts": entry(150.0, 100)}
    write_run(
        tmp_path / "b",
        {"before": before, "after stage1": control_after},
        {"before": {"bilingual_en": 60.0, "bilingual_zh": 40.0}, "after": {"bilingual_en": 50.0, "bilingual_zh": 47.5}},
    )
    report = module.comparison_report({"mixed": tmp_path / "a", "control": tmp_path / "b"})
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in report.splitlines()]
    rows = {row[0]: row[1:] for row in cells if row[0] in ("mixed", "control")}
    # English perplexity is token-weighted over the English sources: exp(300 / 200) before, exp(240 / 200) after.
    assert rows["mixed"][0] == f"{math.exp(1.5):.2f} → {math.exp(1.2):.2f} ({math.exp(1.2) - math.exp(1.5):+.2f})"
    assert rows["control"][0] == f"{math.exp(1.5):.2f} → {math.exp(2.0):.2f} ({math.exp(2.0) - math.exp(1.5):+.2f})"
    assert rows["mixed"][1] == f"{math.exp(3.0):.2f} → {math.exp(2.0):.2f} ({math.exp(2.0) - math.exp(3.0):+.2f})"
    assert rows["mixed"][2] == "60.00 → 62.50 (+2.50)"
    assert rows["control"][2] == "60.00 → 50.00 (-10.00)"
    assert rows["control"][3] == "40.00 → 47.50 (+7.50)"
    assert "## control: benchmarks" in report and "⚠ drop" in report  # each run's forgetting table follows

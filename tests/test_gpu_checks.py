"""`benchmarks/gpu/run.sh --dry-run`: every part of the GPU check is wired, on the CPU, in seconds."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]


def test_dry_run_checks_every_part_and_writes_the_report(tmp_path):
    environment = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPOSITORY / "src")}
    command = ["bash", str(REPOSITORY / "benchmarks" / "gpu" / "run.sh"), "--dry-run", "--out", str(tmp_path)]
    finished = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    results = json.loads((tmp_path / "gpu_results.json").read_text())
    assert results["dry_run"] is True
    parts = results["parts"]
    assert list(parts) == [
        "attention", "throughput", "distributed-step-deepspeed-zero2", "distributed-step-fsdp", "labeling",
        "generation-transformers", "generation-vllm",
    ]  # fmt: skip
    assert parts["attention"]["cpt_trainer_loads_with"] == parts["attention"]["default_attn_implementation"]
    rows = {row["variant"]: row for row in parts["throughput"]["rows"]}
    assert len(rows) == 8
    assert rows["plain"]["status"] == rows["cpt"]["status"] == "ok"
    assert rows["cpt"]["per_group_loss_logged"] is True
    # Same model, same blocks, one optimizer step: the two trainers' losses agree.
    assert abs(rows["cpt"]["last_loss"] - rows["plain"]["last_loss"]) < 1e-3
    assert all(rows[v]["status"] == "skipped" and "compil" in rows[v]["reason"] for v in rows if "+compile" in v)
    for config, kind in (("deepspeed-zero2", "DEEPSPEED"), ("fsdp", "FSDP")):
        step = parts[f"distributed-step-{config}"]
        assert step["status"] == "ok" and step["distributed_type"] == f"DistributedType.{kind}"
        assert abs(step["first_loss"] - step["reference_loss"]) < 1e-3 and step["per_group_loss_logged"]
    assert parts["labeling"]["status"] == "ok" and parts["labeling"]["documents"] == 20
    generated = parts["generation-transformers"]
    assert generated["status"] == "ok" and 0 < generated["output_tokens"] <= 2 * 4
    assert parts["generation-vllm"]["status"] == "skipped" and "vllm" in parts["generation-vllm"]["reason"]
    table = (tmp_path / "gpu_results.md").read_text()
    assert table.count("\n| ") == 1 + 8 + 6  # header, eight throughput variants, six other results

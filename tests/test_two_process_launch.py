"""Two CPU processes form one group through the shipped launch (`ACCELERATE_USE_CPU=1` with the two-process
accelerate config), for a plain `Trainer` and a plain `accelerate` loop; without it, each trains alone and
`check_process_group` says so."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from accelerate import PartialState
from conftest import run_two_processes

from hf_cpt.utils.distributed import check_process_group, launched_world_size

WORKER = Path(__file__).parent / "workers" / "two_process_plain_loops.py"
TWO_PROCESS_CPU = Path(__file__).parents[1] / "recipes" / "accelerate_configs" / "two_process_cpu.yaml"
ROWS = 12


def rank_reports(folder: Path) -> list[dict]:
    return [json.loads((folder / f"rank{rank}.json").read_text()) for rank in (0, 1)]


@pytest.mark.parametrize("loop", ["trainer", "accelerate"])
def test_plain_loop_launched_the_shipped_way_trains_as_one_group_of_two(loop, tmp_path):
    run_two_processes(WORKER, loop, str(tmp_path), accelerate_config=TWO_PROCESS_CPU, env={"ACCELERATE_USE_CPU": "1"})
    ranks = rank_reports(tmp_path)
    assert [rank["world_size"] for rank in ranks] == [2, 2]
    assert [rank["distributed_type"] for rank in ranks] == ["DistributedType.MULTI_CPU"] * 2
    assert [rank["grouped"] for rank in ranks] == [True, True]
    # 3 batches of 2 rows on each of 2 ranks: the 12 rows once, split between the ranks.
    assert len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == ROWS // 2
    assert sorted(ranks[0]["seen"] + ranks[1]["seen"]) == list(range(3, 3 + ROWS))


def test_without_cpu_set_each_process_trains_alone_and_is_warned(tmp_path):
    result = run_two_processes(
        WORKER, "trainer", str(tmp_path), accelerate_config=TWO_PROCESS_CPU, env={"ACCELERATE_USE_CPU": "false"}
    )
    ranks = rank_reports(tmp_path)
    assert [rank["world_size"] for rank in ranks] == [1, 1]
    assert [rank["grouped"] for rank in ranks] == [False, False]
    assert ranks[0]["seen"] == ranks[1]["seen"]  # the same rows twice: nothing was split
    assert result.stderr.count("The launcher started 2 processes, but accelerate runs this one in a group of 1") == 2
    assert "ACCELERATE_USE_CPU=1 accelerate launch" in result.stderr


@pytest.fixture
def one_process() -> PartialState:
    """This test process: accelerate's state of a single process."""
    state = PartialState()
    assert state.num_processes == 1
    return state


@pytest.mark.parametrize("variable", ["WORLD_SIZE", "LOCAL_WORLD_SIZE"])
def test_a_launch_of_two_seen_as_one_process_is_warned(variable, one_process, monkeypatch, caplog):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv(variable, "2")
    assert launched_world_size() == 2
    with caplog.at_level(logging.WARNING, logger="hf_cpt.utils.distributed"):
        assert check_process_group() is False
        assert check_process_group(one_process) is False
    assert len(caplog.records) == 2
    assert "started 2 processes, but accelerate runs this one in a group of 1" in caplog.records[0].getMessage()
    assert "ACCELERATE_USE_CPU=1" in caplog.records[0].getMessage()


def test_matching_or_single_launches_are_not_warned(one_process, monkeypatch, caplog, tmp_path):
    from transformers import TrainingArguments

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    with caplog.at_level(logging.WARNING, logger="hf_cpt.utils.distributed"):
        assert check_process_group() is True  # nothing launched several processes
        monkeypatch.setenv("WORLD_SIZE", "1")
        assert check_process_group(TrainingArguments(output_dir=str(tmp_path), report_to="none")) is True
    assert caplog.records == []


def test_cpt_config_checks_its_process_group(monkeypatch, caplog, tmp_path):
    from hf_cpt import CPTConfig

    # A launch of two as the check reads it (the environment itself would make the config join a real group).
    monkeypatch.setattr("hf_cpt.utils.distributed.launched_world_size", lambda: 2)
    with caplog.at_level(logging.WARNING, logger="hf_cpt.utils.distributed"):
        CPTConfig(output_dir=str(tmp_path), report_to="none")
    assert [record.name for record in caplog.records] == ["hf_cpt.utils.distributed"]
    assert "started 2 processes, but accelerate runs this one in a group of 1" in caplog.records[0].getMessage()

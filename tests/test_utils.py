"""The shared plumbing of `hf_cpt.utils`: batches, atomic writes, retries, hashing, messages, resumable passes."""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from datasets import Dataset, load_dataset

from hf_cpt.utils.distributed import next_common_position
from hf_cpt.utils.hashing import splitmix64
from hf_cpt.utils.imports import missing_extra_message, package_folder
from hf_cpt.utils.inference import eval_mode, pad_batch
from hf_cpt.utils.io import atomic_path, save_split, write_text_atomically
from hf_cpt.utils.records import FAILED, RecordLog
from hf_cpt.utils.resumable import ShardedPass, run_pending
from hf_cpt.utils.retry import Backoff, retry, retry_after_seconds


def test_pad_batch_pads_right_for_scoring_and_left_for_generation():
    right_ids, right_mask = pad_batch([[5, 6, 7], [8]], 0)
    assert right_ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert right_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    left_ids, left_mask = pad_batch([[5, 6, 7], [8]], 0, padding_side="left")
    assert left_ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert left_mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    labels, _ = pad_batch([np.array([1, 2]), (3,)], -100)
    assert labels.tolist() == [[1, 2], [3, -100]] and labels.dtype == torch.long


def test_eval_mode_restores_the_models_mode_even_after_an_error():
    model = torch.nn.Dropout()
    with eval_mode(model):
        assert not model.training
    assert model.training
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError("scoring failed")
    assert model.training
    model.eval()
    with eval_mode(model):
        pass
    assert not model.training  # a model in eval mode stays there


def test_atomic_path_replaces_a_file_whole_or_not_at_all(tmp_path):
    target = tmp_path / "sub" / "scores.npy"
    with atomic_path(target) as temporary:
        assert temporary.parent == target.parent and temporary.suffix == ".npy" and not target.exists()
        np.save(temporary, np.arange(3))  # np.save keeps the name because the suffix is kept
    assert np.load(target).tolist() == [0, 1, 2]
    with pytest.raises(ValueError), atomic_path(target) as temporary:
        np.save(temporary, np.arange(5))
        raise ValueError("killed half-way")
    assert np.load(target).tolist() == [0, 1, 2]
    assert sorted(path.name for path in target.parent.iterdir()) == ["scores.npy"]  # no temporary left behind
    write_text_atomically(tmp_path / "report.json", "{}")
    assert (tmp_path / "report.json").read_text() == "{}"


def test_atomic_path_keeps_the_folder_another_process_finished_first(tmp_path):
    target = tmp_path / "model"
    with atomic_path(target) as staging:
        staging.mkdir()
        (staging / "weights").write_text("first")
    with atomic_path(target) as staging:
        staging.mkdir()
        (staging / "weights").write_text("second")
    assert (target / "weights").read_text() == "first"
    assert [path.name for path in tmp_path.iterdir()] == ["model"]


def test_save_split_writes_the_hub_layout_that_load_dataset_reads(tmp_path):
    rows = Dataset.from_dict({"text": ["a", "b"], "topic": ["x", "y"]})
    path = save_split(rows, tmp_path, "validation", data_dir="data/web-en")
    assert path == tmp_path / "data" / "web-en" / "validation-00000-of-00001.parquet"
    assert save_split(rows, tmp_path) == tmp_path / "data" / "train-00000-of-00001.parquet"
    loaded = load_dataset(str(tmp_path), data_dir="data/web-en", split="validation")
    assert loaded["text"] == ["a", "b"] and loaded["topic"] == ["x", "y"]


def test_backoff_doubles_caps_jitters_and_honours_retry_after():
    exact = Backoff(base=1.0, max_delay=5.0, jitter=0.0)
    assert [exact.delay(attempt) for attempt in range(1, 5)] == [1.0, 2.0, 4.0, 5.0]
    assert exact.delay(1, retry_after=3.0) == 3.0  # the server asks for longer than the backoff
    assert exact.delay(3, retry_after=1.0) == 4.0  # never shorter than the backoff
    assert exact.delay(1, retry_after=30.0) == 5.0  # capped
    jittered = Backoff(base=2.0, max_delay=60.0, jitter=0.5)
    delays = [jittered.delay(2, rng=random.Random(seed)) for seed in range(200)]
    assert 2.0 <= min(delays) < 2.2 and 3.8 < max(delays) <= 4.0
    with pytest.raises(ValueError, match="jitter is 2; set it to a value in \\[0, 1\\]"):
        Backoff(jitter=2)


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("-3") == 0.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    later = email.utils.formatdate(time.time() + 100, usegmt=True)
    assert 98 <= retry_after_seconds(later) <= 100


def test_retry_tries_again_only_what_is_transient_and_at_most_tries_times():
    calls, waits, logged = [], [], []

    def flaky(attempt: int) -> str:
        calls.append(attempt)
        if attempt < 3:
            raise TimeoutError("slow")
        return "done"

    backoff = Backoff(base=1.0, jitter=0.0)
    result = retry(flaky, tries=5, backoff=backoff, retryable=lambda error: isinstance(error, TimeoutError),
                   on_retry=lambda *event: logged.append(event[:2]), sleep=waits.append)  # fmt: skip
    assert result == "done" and calls == [1, 2, 3] and waits == [1.0, 2.0] and logged == [(1, 1.0), (2, 2.0)]
    calls.clear()
    with pytest.raises(TimeoutError):
        retry(flaky, tries=2, backoff=backoff, retryable=lambda error: True, sleep=waits.append)
    assert calls == [1, 2]
    calls.clear()
    with pytest.raises(TimeoutError):
        retry(flaky, tries=5, backoff=backoff, retryable=lambda error: False, sleep=waits.append)
    assert calls == [1]
    waits.clear()
    error = SimpleNamespace(retry_after=9.0)
    with pytest.raises(KeyError):
        retry(lambda attempt: {}["x"], tries=2, backoff=backoff, retryable=lambda e: True,
              retry_after=lambda e: error.retry_after, sleep=waits.append)  # fmt: skip
    assert waits == [9.0]


def reference_splitmix64(value: int) -> int:
    """SplitMix64's finaliser on Python integers, written from its published constants."""
    mask = (1 << 64) - 1
    value ^= value >> 30
    value = (value * 0xBF58476D1CE4E5B9) & mask
    value ^= value >> 27
    value = (value * 0x94D049BB133111EB) & mask
    return value ^ (value >> 31)


def test_splitmix64_matches_the_reference_and_leaves_its_input_alone_unless_asked():
    values = np.array([0, 1, 2, 0x9E3779B97F4A7C15, (1 << 64) - 1], dtype=np.uint64)
    expected = [reference_splitmix64(int(value)) for value in values]
    assert splitmix64(values).tolist() == expected
    assert values.tolist()[1] == 1  # a new array by default
    splitmix64(values, in_place=True)
    assert values.tolist() == expected


def test_missing_extras_read_the_same_for_every_package():
    assert missing_extra_message("lm_eval") == 'lm-eval is not installed; install it with `pip install "hf-cpt[eval]"`.'
    assert missing_extra_message("flash_attn", "use attn_implementation='sdpa'") == (
        'flash-attn is not installed; install it with `pip install "hf-cpt[flash-attn]"` (it needs a CUDA GPU), '
        "or use attn_implementation='sdpa'."
    )
    with pytest.raises(ModuleNotFoundError, match="^no such package; pip install it$"):
        package_folder("hf_cpt_no_such_package", "no such package; pip install it")
    assert (package_folder("hf_cpt", "unused") / "utils" / "io.py").is_file()


def test_next_common_position_is_the_next_global_batch_boundary_of_the_epoch():
    sampler = type("Sampler", (), {"position": 117, "epoch": 1, "__len__": lambda self: 100})()
    assert next_common_position(sampler, 8) == 124  # 17 drawn into epoch 1, so from draw 24 of it
    sampler.position = 124
    assert next_common_position(sampler, 8) == 124  # already on a boundary


@dataclass(frozen=True)
class Item:
    key: str


def test_run_pending_skips_finished_items_redoes_failed_ones_and_returns_every_record(tmp_path):
    log = RecordLog(tmp_path / "records")
    with log.writer() as writer:
        writer.write({"key": "a", "status": "done", "run": 1})
        writer.write({"key": "b", "status": FAILED, "run": 1})
    done_now = []

    def process(items, writer):
        for item in items:
            done_now.append(item.key)
            writer.write({"key": item.key, "status": "done", "run": 2})

    records = run_pending(log, [Item("a"), Item("b"), Item("c")], process, what="Test")
    assert done_now == ["b", "c"]
    assert {key: record["run"] for key, record in records.items()} == {"a": 1, "b": 2, "c": 2}
    done_now.clear()
    run_pending(log, [Item("a"), Item("b"), Item("c")], process, what="Test")
    assert done_now == []  # nothing left to do


def test_sharded_pass_runs_only_the_shards_not_on_disk_and_returns_all_in_order(tmp_path):
    computed = []

    def compute(start: int, stop: int) -> np.ndarray:
        computed.append((start, stop))
        return np.arange(start, stop, dtype=np.float64)

    shards = ShardedPass(10, 4, ["fingerprint"], tmp_path, "unused", "Test")
    assert np.concatenate(shards.run(compute)).tolist() == list(range(10))
    assert computed == [(0, 4), (4, 8), (8, 10)]
    computed.clear()
    shards.path(4).unlink()
    again = ShardedPass(10, 4, ["fingerprint"], tmp_path, "unused", "Test")
    assert np.concatenate(again.run(compute)).tolist() == list(range(10))
    assert computed == [(4, 8)]

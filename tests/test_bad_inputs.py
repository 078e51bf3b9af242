"""Every bad input ends in one sentence naming the field (or path) and the fix; the CLI prints it without a traceback.

The table holds one case per bad input: what is called, the error type, and a pattern that names the field and
the fix. The CLI cases check the exit status, that the sentence reaches stderr alone, and that `--debug` or
`HF_CPT_DEBUG=1` brings the traceback back.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from chat_server import SERVER_ERROR, ChatServer
from datasets import Dataset
from huggingface_hub.errors import OfflineModeIsEnabled
from test_synth_generator import ScriptedBackend, snippets

from hf_cpt import CPTConfig
from hf_cpt.checkpoints import resolve_checkpoint
from hf_cpt.cli import main
from hf_cpt.cli.commands.evaluate import read_baseline
from hf_cpt.data.sources import load_source
from hf_cpt.hub import push_folder, with_retries
from hf_cpt.synth import SynthesisFailed, SynthQAGenerator
from hf_cpt.topics import Taxonomy, check_topic_values, train_topic_classifier
from hf_cpt.utils.errors import WriteError, naming_path, run_main
from hf_cpt.utils.io import write_text_atomically
from hf_cpt.utils.records import RecordLog


def source_with(root: Path, name: str, content: bytes | None = None, table: pa.Table | None = None) -> str:
    """A corpus folder with one source `web-en` holding one train file."""
    folder = root / "data" / "web-en"
    folder.mkdir(parents=True)
    if table is not None:
        pq.write_table(table, folder / name)
    else:
        (folder / name).write_bytes(content)
    return str(root)


def _latin1(root: Path) -> None:
    load_source(source_with(root, "train.jsonl", b'{"text": "fine"}\n{"text": "caf\xe9 au lait"}\n'), "web-en")


def _binary(root: Path) -> None:
    load_source(source_with(root, "train.jsonl", bytes(range(256)) * 4), "web-en")


def _int_text(root: Path) -> None:
    load_source(source_with(root, "train.parquet", table=pa.table({"text": [1, 2, 3]})), "web-en")


def _one_class(root: Path) -> None:
    data = Dataset.from_dict({"text": ["a b c", "d e f", "g h i"], "topic": ["Law and Policy"] * 3})
    train_topic_classifier(data, "en", model_name_or_path=str(root / "never-loaded"), output_dir=root / "out")


def _disk_full(root: Path, monkeypatch) -> None:
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    write_text_atomically(root / "out" / "report.json", "{}")


def _read_only(root: Path, monkeypatch) -> None:
    def refused(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(Path, "write_text", refused)
    write_text_atomically(root / "out" / "report.json", "{}")


def _offline_push(root: Path, monkeypatch) -> None:
    class OfflineApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, *args, **kwargs):
            raise OfflineModeIsEnabled("offline")

    (root / "folder").mkdir()
    (root / "folder" / "README.md").write_text("card")
    monkeypatch.setattr("huggingface_hub.HfApi", OfflineApi)
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    push_folder(root / "folder", "me/data", repo_type="dataset", include=["README.md"])


def _nothing_kept(root: Path) -> None:
    generator = SynthQAGenerator(ScriptedBackend(), root)
    if not len(generator.generate(snippets(["fail one", "fail two", "bad three"]))):
        raise SynthesisFailed(generator.report, generator.output_dir)


def _recipe_config(root: Path, **values) -> None:
    """Parse a recipe config of one stage with `values` added (top-level fields or a stage's overrides)."""
    import yaml

    from hf_cpt.run_config import RecipeParser

    stage = {"name": "cpt", "num_tokens": 1024, "mixture": {"web-en": 1.0}}
    top = {"output_dir": str(root / "run"), "use_cpu": True, "bf16": False, "report_to": "none"}
    for key, value in values.items():
        (stage if key.startswith("curriculum_") else top)[key] = value
    (root / "config.yaml").write_text(yaml.safe_dump({**top, "stages": [stage]}))
    RecipeParser().parse_args_and_config(["--config", str(root / "config.yaml")])


def _safetensors_full(folder: Path) -> None:
    """What safetensors raises when the disk fills while a model is written: its own error, not an OSError."""
    from safetensors import SafetensorError

    with naming_path(folder):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


def _written(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


CASES = {
    "topic outside the taxonomy": (
        lambda root, mp: check_topic_values(["Law and Polcy", "Law and Policy"], "web-en"),
        ValueError,
        r"Source 'web-en' has 1 'topic' value\(s\) outside taxonomy 'en': \['Law and Polcy'\]; relabel them .* "
        r"or map them to 'Others' with unknown_to_others",
    ),
    "slash in a topic value": (
        lambda root, mp: check_topic_values(["Law/Policy"], "web-en"),
        ValueError,
        r"Topic 'Law/Policy' of source 'web-en' \(column 'topic'\) contains '/'.*; rename it "
        r"\(e\.g\. 'Law and Policy'\)",
    ),
    "slash in a taxonomy topic": (
        lambda root, mp: Taxonomy("mine", "en", ("Law/Policy", "Others")),
        ValueError,
        r"Topic 'Law/Policy' of taxonomy 'mine' contains '/'.*; rename it",
    ),
    "latin-1 jsonl": (
        lambda root, mp: _latin1(root),
        ValueError,
        r"train\.jsonl is not valid UTF-8 \(line 2, byte 30\); re-encode it as UTF-8",
    ),
    "binary file": (
        lambda root, mp: _binary(root),
        ValueError,
        r"train\.jsonl is not valid UTF-8 \(line 2, byte 128\); re-encode it",
    ),
    "parquet text column of ints": (
        lambda root, mp: _int_text(root),
        ValueError,
        r"text_column 'text' of source 'web-en' holds int64 values, not text; convert that column to strings or set "
        r"text_column",
    ),
    "classifier of one class": (
        lambda root, mp: _one_class(root),
        ValueError,
        r"Column 'topic' holds one topic only \('Law and Policy'\).*; label documents of at least two topics",
    ),
    "disk full": (
        _disk_full,
        WriteError,
        r"No space left on the device while writing .*report\.json; free space there .* run the same command again",
    ),
    "read-only folder": (
        _read_only,
        WriteError,
        r"Cannot write .*report\.json \(Permission denied\); make that folder writable or set the output folder",
    ),
    "push in offline mode": (
        _offline_push,
        ValueError,
        r"HF_HUB_OFFLINE is set, so nothing can be pushed to me/data; unset HF_HUB_OFFLINE",
    ),
    "synthesis that keeps nothing": (
        lambda root, mp: _nothing_kept(root),
        SynthesisFailed,
        r"Synthetic QA kept 0 of 3 items \(by reason: request_failed 2, unparsable 1\); first error: HTTP 500 after 5 "
        r"tries: overloaded; fix the cause",
    ),
    "resume with no checkpoint": (
        lambda root, mp: resolve_checkpoint(True, str(root)),
        ValueError,
        r"resume_from_checkpoint is True but .* holds no checkpoint-N folder; train without resume_from_checkpoint",
    ),
    "learning rate of zero": (
        lambda root, mp: CPTConfig(output_dir=str(root), learning_rate=0.0),
        ValueError,
        r"learning_rate is 0\.0; set it to a positive number \(paper: 1e-5 for Llama-3-8B",
    ),
    "negative learning rate": (
        lambda root, mp: CPTConfig(output_dir=str(root), learning_rate=-1e-5),
        ValueError,
        r"learning_rate is -1e-05; set it to a positive number",
    ),
    "batch size of zero": (
        lambda root, mp: CPTConfig(output_dir=str(root), per_device_train_batch_size=0),
        ValueError,
        r"per_device_train_batch_size is 0; set it to 1 or more\.",
    ),
    "accumulation of zero": (
        lambda root, mp: CPTConfig(output_dir=str(root), gradient_accumulation_steps=0),
        ValueError,
        r"gradient_accumulation_steps is 0; set it to 1 or more\.",
    ),
    "eval batch size of zero": (
        lambda root, mp: CPTConfig(output_dir=str(root), per_device_eval_batch_size=0),
        ValueError,
        r"per_device_eval_batch_size is 0; set it to 1 or more\.",
    ),
    "recipe eval batch size of zero": (
        lambda root, mp: _recipe_config(root, eval_batch_size=0),
        ValueError,
        r"eval_batch_size is 0; set it to 1 or more\.",
    ),
    "discipline curriculum without disciplines": (
        lambda root, mp: _recipe_config(root, curriculum_order="PB"),
        ValueError,
        r"stages\[0\] \(cpt\): curriculum_order PB orders blocks by discipline, and no source's blocks carry one; "
        r"set source_options: \{synthesis-en: \{pack_by: discipline\}\}",
    ),
    "baseline that is not an evaluation": (
        lambda root, mp: read_baseline(_written(root / "baseline.json", '{"accuracy": 3}')),
        ValueError,
        r"--baseline .*baseline\.json is not an evaluation result \(no 'scores' in it\); give the evaluation\.json",
    ),
    "baseline that is not JSON": (
        lambda root, mp: read_baseline(_written(root / "baseline.json", "scores: 3")),
        ValueError,
        r"--baseline .*baseline\.json is not JSON \(.*\); give the evaluation\.json that `hf-cpt eval --output`",
    ),
    "disk full while safetensors writes a checkpoint": (
        lambda root, mp: _safetensors_full(root / "checkpoint-4"),
        WriteError,
        r"No space left on the device while writing .*checkpoint-4; free space there .* run the same command again",
    ),
    "resume from a path that is not a folder": (
        lambda root, mp: resolve_checkpoint(str(root / "checkpoint-9"), str(root)),
        FileNotFoundError,
        r"resume_from_checkpoint '.*checkpoint-9' is not a folder; give a checkpoint-N folder or True",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_input_is_one_sentence_naming_the_field_and_the_fix(case, tmp_path, monkeypatch):
    call, error_type, pattern = CASES[case]
    with pytest.raises(error_type, match=pattern) as caught:
        call(tmp_path, monkeypatch)
    message = str(caught.value)
    assert "\n" not in message and message.endswith((".", ")"))


def test_offline_mode_is_not_retried_as_a_transient_error():
    calls = []

    def offline():
        calls.append(1)
        raise OfflineModeIsEnabled("offline")

    with pytest.raises(OfflineModeIsEnabled):
        with_retries(offline, tries=4, sleep=lambda seconds: pytest.fail("waited to retry offline mode"))
    assert calls == [1]


def test_a_failed_synthesis_writes_its_report_and_nothing_to_push(tmp_path):
    generator = SynthQAGenerator(ScriptedBackend(), tmp_path)
    assert len(generator.generate(snippets(["fail one", "bad two"]))) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["failure_reasons"] == {"request_failed": 1, "unparsable": 1}
    assert report["first_error"] == "HTTP 500 after 5 tries: overloaded"
    assert not (tmp_path / "data").exists() and not (tmp_path / "README.md").exists()
    with pytest.raises(ValueError, match="holds no generated pairs .*; run generate\\(\\) until it keeps pairs"):
        generator.push_to_hub("me/pairs", dry_run=True)
    assert not (tmp_path.with_name(tmp_path.name + ".hub")).exists()


def test_a_full_disk_while_recording_is_one_sentence_and_the_rerun_resumes(tmp_path, monkeypatch):
    data = snippets(["good about ions", "good about waves", "good about heat", "good about light"])
    real_fsync, writes = os.fsync, []

    def fsync_then_full(descriptor):
        writes.append(descriptor)
        if len(writes) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync_then_full)
    with pytest.raises(WriteError, match=r"No space left on the device while writing .*records/rank0-.*\.jsonl"):
        SynthQAGenerator(ScriptedBackend(), tmp_path, chunk_size=1).generate(data)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert len(RecordLog(tmp_path / "records").read()) >= 2
    backend = ScriptedBackend()
    pairs = SynthQAGenerator(backend, tmp_path, chunk_size=1).generate(data, near_dedup_threshold=None)
    assert len(pairs) == 4
    assert len(backend.asked) <= 2  # the items recorded before the disk filled are not asked again


# ---- the command line ----
def _cli(argv, capsys, env=None, monkeypatch=None):
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as caught:
        main(argv)
    return caught.value.code, capsys.readouterr().err


def test_the_cli_prints_the_sentence_alone_and_exits_non_zero(tmp_path, capsys, monkeypatch):
    data = tmp_path / "pairs.jsonl"
    data.write_bytes(b'{"text": "caf\xe9"}\n')
    monkeypatch.delenv("HF_CPT_DEBUG", raising=False)
    code, err = _cli(["corrupt", str(data), "--output", str(tmp_path / "out"), "--fraction", "0.3"], capsys)
    assert code == 1
    assert "Traceback" not in err
    assert f"hf-cpt: error: {data} is not valid UTF-8 (line 1, byte 13); re-encode it as UTF-8" in err


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_debug_brings_the_traceback_back(tmp_path, capsys, monkeypatch, how):
    data = tmp_path / "pairs.xyz"
    data.write_text("x")
    argv = ["corrupt", str(data), "--output", str(tmp_path / "out"), "--fraction", "0.3"]
    env = {"HF_CPT_DEBUG": "1"} if how == "environment" else {}
    monkeypatch.delenv("HF_CPT_DEBUG", raising=False)
    code, err = _cli([*argv, "--debug"] if how == "flag" else argv, capsys, env, monkeypatch)
    assert code == 1
    assert "Traceback (most recent call last)" in err and "is a .xyz file; give a .jsonl" in err


def test_a_synthesis_whose_server_refuses_everything_exits_non_zero_and_pushes_nothing(tmp_path, capsys, monkeypatch):
    source = tmp_path / "snippets.jsonl"
    Dataset.from_dict({"text": [f"Notes on item {i}." for i in range(3)], "discipline": ["physics"] * 3}).to_json(
        source
    )
    output = tmp_path / "out"
    server = ChatServer({i: [SERVER_ERROR] for i in range(3)})
    monkeypatch.delenv("HF_CPT_DEBUG", raising=False)
    with server.running() as url:
        argv = ["synth", str(source), "--backend", "openai", "--model", "served", "--output", str(output),
                "--base-url", url, "--max-tries", "1", "--push-to-hub", "me/pairs", "--dry-run"]  # fmt: skip
        code, err = _cli(argv, capsys)
    assert code == 1 and "Traceback" not in err
    assert "Synthetic QA kept 0 of 3 items (by reason: request_failed 3); first error: " in err
    assert "HTTP 500" in err
    assert not (output / "data").exists() and not output.with_name("out.hub").exists()


def test_run_main_leaves_bugs_their_traceback(capsys):
    def buggy(argv):
        raise KeyError("a bug, not an input")

    with pytest.raises(KeyError):
        run_main(buggy, [])
    assert run_main(lambda argv: None, []) == 0


def test_a_corpus_with_topics_outside_the_taxonomy_is_refused_naming_them():
    from hf_cpt.topics import check_corpus_topics

    with pytest.raises(
        ValueError, match=r"Source 'web-en' has topic values outside taxonomy 'en': \['Law and Polcy'\]"
    ):
        check_corpus_topics(["web-en/Law and Polcy", "web-en/Others", "book-en"])
    check_corpus_topics(["web-en/Law and Policy", "web-cn/Others", "my-web/anything"])  # no taxonomy: not checked


def test_bad_json_for_mixture_importance_is_one_sentence_naming_the_flag(tmp_path):
    from hf_cpt import CPTConfig

    with pytest.raises(ValueError, match=r"--mixture_importance is not valid JSON \(.*\); give a mapping topic"):
        CPTConfig(output_dir=str(tmp_path), mixture_importance="{web-en/Law: 2")

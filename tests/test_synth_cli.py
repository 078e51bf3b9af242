"""`hf-cpt synth` and `hf-cpt corrupt` from the command line, through an OpenAI-compatible server on loopback."""

import json

import chat_server
from chat_server import RATE_LIMITED, SERVER_ERROR, ChatServer
from datasets import Dataset, load_dataset

from hf_cpt.cli import main

SOLUTION = (
    "Write down what is known, apply the relevant law step by step with units, and state the result clearly. "
    "Check the answer against a rough estimate to be sure it is reasonable."
)


def qa_answer(item: int) -> str:
    return (
        f"[Problem]\nWhat is the quantity asked for in situation number {item} of this set?\n\n[Solution]\n{SOLUTION}"
    )


def test_synth_command_generates_through_a_server_and_a_rerun_asks_only_for_failed_items(tmp_path, monkeypatch):
    monkeypatch.setattr(chat_server, "answer", qa_answer)
    snippets = tmp_path / "snippets.jsonl"
    Dataset.from_dict(
        {"text": [f"Notes on item {i}: a body falls freely." for i in range(5)], "discipline": ["physics"] * 5}
    ).to_json(snippets)
    output = tmp_path / "out"
    command = ["synth", str(snippets), "--backend", "openai", "--model", "served", "--output", str(output)]
    command += ["--max-tries", "2", "--max-new-tokens", "64"]
    server = ChatServer({1: [SERVER_ERROR, SERVER_ERROR], 2: [RATE_LIMITED]}, retry_after=0.1)
    with server.running() as url:
        main([*command, "--base-url", url])
        report = json.loads((output / "report.json").read_text())
        assert (report["items"], report["accepted"], report["failed"]) == (5, 4, 1)
        assert server.counts == {0: 1, 1: 2, 2: 2, 3: 1, 4: 1}  # tries bounded; the 429 asked again once
        main([*command, "--base-url", url])  # the server has recovered: only item 1 is asked again
    assert server.counts == {0: 1, 1: 3, 2: 2, 3: 1, 4: 1}
    report = json.loads((output / "report.json").read_text())
    assert (report["accepted"], report["failed"], report["kept"]) == (5, 0, 5)
    pairs = load_dataset("parquet", data_files=str(output / "data" / "*.parquet"), split="train")
    assert sorted(pairs["seed_id"]) == ["0", "1", "2", "3", "4"] and set(pairs["model"]) == {"served"}
    assert "situation number 3" in pairs[pairs["seed_id"].index("3")]["problem"]


def test_corrupt_command_corrupts_the_fraction_asked_and_reports_the_edits(tmp_path):
    data = tmp_path / "pairs.jsonl"
    text = "Mix 2 g of salt with 30 mL of water; the solution is clear and the clear liquid weighs 32 g."
    Dataset.from_dict({"text": [text] * 10}).to_json(data)
    main(["corrupt", str(data), "--output", str(tmp_path / "out"), "--fraction", "0.3", "--transforms", "numbers"])
    report = json.loads((tmp_path / "out" / "corruption_report.json").read_text())
    assert (report["samples"], report["corrupted"]) == (10, 3) and report["edits"] == {"numbers": 3 * 3}
    corrupted = load_dataset("parquet", data_files=str(tmp_path / "out" / "data" / "*.parquet"), split="train")
    assert sum(row != text for row in corrupted["text"]) == 3

"""SynthQAGenerator: items keyed and recorded as they finish, resumed without loss or repeats, filtered, carded."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from datasets import Dataset, load_dataset

from hf_cpt.data import DEMO_CORPUS_PATH
from hf_cpt.generation import Completion, GenerationBackend, SamplingParams
from hf_cpt.synth import SynthQAGenerator

WORKER = Path(__file__).parent / "workers" / "synth_generate.py"

SOLUTION = (
    "First write down what is known and what is asked. Then apply the relevant law step by step, "
    "checking the units at every stage, and state the result clearly with its units."
)


def seed_of(conversation) -> str:
    """The seed snippet inside a scientific prompt (between '<Discipline> Content' and 'Guidelines')."""
    content = conversation[-1]["content"]
    return content.split(" Content\n", 1)[1].split("\nGuidelines\n", 1)[0].strip()


class ScriptedBackend(GenerationBackend):
    """Answers by the seed snippet: 'bad ...' is unparsable, 'fail ...' fails, anything else a good pair."""

    name = "scripted"

    def __init__(self, delay: float = 0.0, log: Path | None = None) -> None:
        self.model_name = "scripted-model"
        self.delay = delay
        self.log = log
        self.asked: list[str] = []

    def answer(self, seed: str) -> Completion:
        if seed.startswith("fail"):
            return Completion(text=None, finish_reason=None, error="HTTP 500 after 5 tries: overloaded", attempts=5)
        if seed.startswith("bad"):
            return Completion(
                text="I cannot help with that.", finish_reason="stop", prompt_tokens=9, completion_tokens=6
            )
        problem = f"Consider this situation about {seed.split()[-1]} and find the quantity asked for in it."
        raw = f"Sure! Here is a pair.\n\n[Problem]\n{problem}\n\n[Solution]\n{SOLUTION}"
        return Completion(text=raw, finish_reason="stop", prompt_tokens=50, completion_tokens=60)

    def _completions(self, conversations, params):
        for index, conversation in enumerate(conversations):
            seed = seed_of(conversation)
            time.sleep(self.delay)
            self.asked.append(seed)
            yield index, self.answer(seed)
            if self.log is not None:
                with self.log.open("a") as log:
                    log.write(seed + "\n")


def snippets(texts, disciplines=None) -> Dataset:
    disciplines = disciplines or ["physics" if i % 2 else "chemistry" for i in range(len(texts))]
    return Dataset.from_dict({"text": texts, "discipline": disciplines})


def test_pairs_rejects_and_failures_are_recorded_with_provenance_and_rates(tmp_path):
    data = snippets(["good about ions", "bad output please", "fail always", "good about waves"])
    backend = ScriptedBackend()
    generator = SynthQAGenerator(backend, tmp_path, sampling=SamplingParams(max_new_tokens=64, temperature=0.5))
    pairs = generator.generate(data, near_dedup_threshold=None)
    assert pairs["problem"] == [
        "Consider this situation about ions and find the quantity asked for in it.",
        "Consider this situation about waves and find the quantity asked for in it.",
    ]
    row = pairs[0]
    assert row["text"] == f"{row['problem']}\n\n{row['solution']}"
    assert row["solution"] == SOLUTION  # the chatter before the problem is not part of the pair
    assert (row["discipline"], row["seed_id"], row["model"], row["backend"]) == (
        "chemistry",
        "0",
        "scripted-model",
        "scripted",
    )
    assert (row["prompt_version"], row["temperature"], row["max_new_tokens"]) == ("scientific_qa/v1", 0.5, 64)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (50, 60)
    report = generator.report
    assert (report["items"], report["accepted"], report["failed"], report["kept"]) == (4, 2, 1, 2)
    assert report["rejected"] == {"unparsable": 1}
    assert report["accept_rates"]["physics"] == {"total": 2, "accepted": 1, "rate": 0.5, "rejected": {"unparsable": 1}}
    assert report["accept_rates"]["chemistry"]["rejected"] == {"request_failed": 1}
    rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert {(r["status"], r["reject_reason"]) for r in rejects} == {
        ("rejected", "unparsable"),
        ("failed", "request_failed"),
    }
    assert next(r for r in rejects if r["status"] == "failed")["error"] == "HTTP 500 after 5 tries: overloaded"
    saved = load_dataset("parquet", data_files=str(tmp_path / "data" / "*.parquet"), split="train")
    assert saved["key"] == pairs["key"]


def test_a_rerun_asks_only_for_failed_items_and_keeps_one_record_per_item(tmp_path):
    data = snippets(["good one", "fail once", "bad two"])
    first = ScriptedBackend()
    SynthQAGenerator(first, tmp_path).generate(data)
    assert first.asked == ["good one", "fail once", "bad two"]

    class Recovered(ScriptedBackend):
        def answer(self, seed):
            return super().answer(seed.replace("fail", "good"))

    second = Recovered()
    generator = SynthQAGenerator(second, tmp_path)
    pairs = generator.generate(data)
    assert second.asked == ["fail once"]  # finished items (accepted or rejected) are not asked again
    assert len(pairs) == 2 and generator.report["failed"] == 0 and generator.report["finished"] == 3


def test_each_sample_of_a_seed_is_its_own_item_with_its_own_sampling_seed(tmp_path):
    backend = ScriptedBackend()
    generator = SynthQAGenerator(backend, tmp_path, samples_per_seed=2, sampling=SamplingParams(seed=7))
    items = generator.plan(snippets(["good about ions"]))
    assert [item.sample for item in items] == [0, 1] and len({item.key for item in items}) == 2
    pairs = generator.generate(snippets(["good about ions"]), near_dedup_threshold=None)
    # Both answers are the same text here, so the exact-duplicate filter keeps one.
    assert pairs["sampling_seed"] == [7] and generator.report["filters"]["dropped"]["exact_duplicate"] == 1
    # Another model, prompt or sampling makes other keys: nothing is taken for done by mistake.
    other = SynthQAGenerator(backend, tmp_path, samples_per_seed=2, sampling=SamplingParams(seed=8))
    assert not {item.key for item in items} & {item.key for item in other.plan(snippets(["good about ions"]))}


def test_a_pair_quoting_a_benchmark_question_is_dropped_and_reported(tmp_path):
    question = "A ball is thrown straight up at 12 m/s from the edge of a cliff that is 30 m high above the beach"

    class Leaky(ScriptedBackend):
        def answer(self, seed):
            completion = super().answer(seed)
            if "leak" in seed:
                completion.text = f"[Problem]\n{question}. How long until it lands?\n\n[Solution]\n{SOLUTION}"
            return completion

    generator = SynthQAGenerator(Leaky(), tmp_path)
    pairs = generator.generate(snippets(["good about ions", "good leak here"]), benchmark_texts=[question])
    assert len(pairs) == 1 and "ions" in pairs[0]["problem"]
    assert generator.report["filters"]["dropped"] == {"exact_duplicate": 0, "near_duplicate": 0, "contaminated": 1}
    dropped = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert [(r["status"], r["drop_reason"]) for r in dropped] == [("filtered", "contaminated")]


def test_by_default_pairs_are_kept_clear_of_the_bundled_benchmark_questions(tmp_path):
    from hf_cpt.evaluation import bundled_questions

    question = bundled_questions()[1]  # "What is the unit of electric current?"

    class Leaky(ScriptedBackend):
        def answer(self, seed):
            completion = super().answer(seed)
            if "leak" in seed:
                completion.text = f"[Problem]\nA quiz asks: {question} Explain your choice.\n\n[Solution]\n{SOLUTION}"
            return completion

    generator = SynthQAGenerator(Leaky(), tmp_path)
    pairs = generator.generate(snippets(["good about ions", "good leak here"]))
    assert len(pairs) == 1 and generator.report["filters"]["dropped"]["contaminated"] == 1
    assert generator.report["filters"]["benchmark_texts"] == len(bundled_questions())
    opted_out = SynthQAGenerator(Leaky(), tmp_path / "no-decontamination")
    assert len(opted_out.generate(snippets(["good about ions", "good leak here"]), benchmark_texts=[])) == 2


def test_code_items_draw_demonstrations_by_seed(tmp_path):
    problems = load_dataset("json", data_files=f"{DEMO_CORPUS_PATH}/snippets/leetcode.jsonl", split="train")
    generator = SynthQAGenerator(ScriptedBackend(), tmp_path, task="code_qa", code_problems=problems, num_examples=2)
    items = generator.plan(num_items=3)
    again = SynthQAGenerator(ScriptedBackend(), tmp_path, task="code_qa", code_problems=problems, num_examples=2)
    assert [item.messages for item in items] == [item.messages for item in again.plan(num_items=3)]
    assert len({item.seed_id for item in items}) == 3 and all(item.discipline == "code" for item in items)
    contents = [item.messages[0]["content"] for item in items]
    assert all("Demonstration 2" in content and "Demonstration 3" not in content for content in contents)


def test_the_card_says_where_the_pairs_come_from_and_a_push_uploads_the_staged_folder(tmp_path, monkeypatch):
    generator = SynthQAGenerator(ScriptedBackend(), tmp_path / "out")
    generator.generate(snippets(["good about ions", "bad output", "good about waves"]))
    card = (tmp_path / "out" / "README.md").read_text()
    assert "scripted-model" in card and "scientific_qa/v1" in card and generator.prompt.fingerprint in card
    assert "| chemistry | 2 | 2 | 100% | 2 |" in card and "| physics | 1 | 0 | 0% | 0 |" in card
    assert "unparsable: 1" in card and "arXiv:2407.18743" in card
    staged = generator.push_to_hub("someone/synthetic-qa", dry_run=True)
    assert sorted(str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file()) == [
        "README.md",
        "data/train-00000-of-00001.parquet",
    ]
    # The upload itself is intercepted (no network here): it must send exactly the staged folder.
    calls = []

    class FakeApi:
        def __init__(self, token):
            calls.append(("token", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs["repo_type"]))

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs["repo_id"], kwargs["repo_type"], kwargs["folder_path"]))
            return "commit"

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    assert generator.push_to_hub("someone/synthetic-qa") == "commit"
    assert calls == [
        ("token", "hf_test"),
        ("create_repo", "someone/synthetic-qa", "dataset"),
        ("upload_folder", "someone/synthetic-qa", "dataset", str(staged)),
    ]
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    with pytest.raises(ValueError, match="No Hugging Face token found; set HF_TOKEN"):
        generator.push_to_hub("someone/synthetic-qa")


def test_bad_settings_fail_with_one_sentence(tmp_path):
    backend = ScriptedBackend()
    with pytest.raises(ValueError, match=r"task is 'essay'; use one of"):
        SynthQAGenerator(backend, tmp_path, task="essay")
    with pytest.raises(ValueError, match="task 'code_qa' needs code_problems"):
        SynthQAGenerator(backend, tmp_path, task="code_qa")
    generator = SynthQAGenerator(backend, tmp_path)
    with pytest.raises(ValueError, match=r"Column 'discipline' is not in the snippets \(columns: \['text'\]\)"):
        generator.plan(Dataset.from_dict({"text": ["x"]}))
    with pytest.raises(ValueError, match="discipline 'alchemy' is unknown"):
        generator.plan(snippets(["good"], ["alchemy"]))
    with pytest.raises(ValueError, match="Snippet 1 is empty"):
        generator.plan(snippets(["good", "  "]))


def test_a_killed_run_restarts_with_exactly_one_output_per_item_and_nothing_generated_twice(tmp_path):
    texts = [f"good about topic{i}" for i in range(12)]
    snippets(texts).to_json(tmp_path / "snippets.jsonl")
    log = tmp_path / "generated.log"
    process = subprocess.Popen([sys.executable, str(WORKER), str(tmp_path), str(log)])
    try:
        while not log.exists() or len(log.read_text().splitlines()) < 4:  # bounded by the worker's own length
            assert process.poll() is None, "the worker ended before it could be killed"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)  # a real kill, mid-run
    finally:
        process.wait(timeout=60)
    first_run = log.read_text().splitlines()
    assert 4 <= len(first_run) < len(texts)
    backend = ScriptedBackend(log=log)
    pairs = SynthQAGenerator(backend, tmp_path / "out", chunk_size=5).generate(
        load_dataset("json", data_files=str(tmp_path / "snippets.jsonl"), split="train"), near_dedup_threshold=None
    )
    generated = log.read_text().splitlines()
    assert sorted(generated) == sorted(texts)  # every item generated once, over both runs
    assert set(backend.asked).isdisjoint(first_run)
    assert sorted(pairs["seed_id"], key=int) == [str(i) for i in range(len(texts))]


@pytest.mark.slow
def test_smollm2_writes_pairs_that_parse_through_the_whole_generator(tmp_path):
    from hf_cpt.data import demo_snippets_path
    from hf_cpt.modeling import EMBEDDED_MODEL_ID
    from hf_cpt.synth import load_backend, parse_qa

    data = load_dataset("json", data_files=demo_snippets_path(), split="train").select([0, 8, 12])
    backend = load_backend("transformers", None, batch_size=3)  # the embedded SmolLM2-135M-Instruct
    generator = SynthQAGenerator(backend, tmp_path, sampling=SamplingParams(max_new_tokens=160, temperature=0))
    generator.generate(data)
    records = list(generator.read_records().values())
    assert len(records) == 3 and {record["model"] for record in records} == {EMBEDDED_MODEL_ID}
    assert sum(parse_qa(record["raw"]) is not None for record in records) >= 2
    # Each outcome is explained: accepted, or rejected with its reason (a 135M model often restates the guidelines).
    assert all((record["status"] == "accepted") == (record["reject_reason"] is None) for record in records)

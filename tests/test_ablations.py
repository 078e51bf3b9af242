"""The §4.2 ablations as shipped configs: each runs through the recipe on a tiny model, a few steps.

The corpus here has the twelve sources of the released dataset (the TinyLlama mixtures name them all), web
topics, and synthetic QA with a `discipline` column; beside it, folders laid out like TIGER-Lab/WebInstructSub
(`data/train.parquet`, question/answer) and HuggingFaceTB/cosmopedia (`data/<subset>/train.parquet`, prompt/text).
Every source, topic and discipline writes words from its own vocabulary, so a block tells where it came from.
"""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import RecordingTrainer, micro_config
from datasets import Dataset

import hf_cpt.stages
from hf_cpt.cli import main as cli_main
from hf_cpt.curriculum.orders import DISCIPLINE_ORDERS
from hf_cpt.data import load_corpus
from hf_cpt.data.packing import read_group_ids
from hf_cpt.derived_sources import RECORD_NAME, derive_sources
from hf_cpt.reporting import perplexity_by_source
from hf_cpt.run_config import SourceOptions, StageConfig, read_config_file
from hf_cpt.stages import run_stage
from hf_cpt.testing import tiny_llama, word_tokenizer

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "llama3_syne.py"
ABLATIONS = sorted((ROOT / "recipes" / "configs" / "ablations").glob("*.yaml"))
SURROGATE = ROOT / "recipes" / "configs" / "tinyllama.yaml"
MAX_LENGTH, BATCH, STEPS = 32, 4, 3

SOURCES = [
    "web-cn", "encyclopedia-cn", "book-cn", "qa_forum-cn", "web-en", "encyclopedia-en", "book-en", "qa_forum-en",
    "paper-en", "math-en", "code-en",
]  # fmt: skip
TOPICS = {"web-en": ["Law and Policy", "Medicine and Health"], "web-cn": ["Philosophy", "Psychology"]}
DISCIPLINES = ["physics", "biology", "chemistry", "mathematics"]
COSMOPEDIA_SUBSETS = ["openstax", "stanford", "khanacademy", "auto_math_text"]


def vocabulary(name: str) -> list[str]:
    """Twenty words no other group uses (letters only: the corruption of numbers leaves them alone)."""
    stem = "".join(char for char in name.lower() if char.isalpha())
    return [f"{stem}x{chr(97 + i)}" for i in range(20)]


GROUPS = [
    *(f"{source}/{topic}" for source in SOURCES for topic in TOPICS.get(source, [None]) if topic),
    *(source for source in SOURCES if source not in TOPICS),
    *(f"synthesis/{discipline}" for discipline in DISCIPLINES),
    "webinstruct",
    "cosmopedia",
]


def document(rng: np.random.Generator, group: str, words: int = 40) -> str:
    return " ".join(rng.choice(vocabulary(group), size=words))


def write_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(rows).to_parquet(str(path))


@pytest.fixture(scope="module")
def surrogate(tmp_path_factory) -> dict[str, str]:
    """The corpus, the WebInstruct and Cosmopedia folders, and a tiny model whose tokenizer knows every word."""
    root = tmp_path_factory.mktemp("surrogate")
    rng = np.random.default_rng(0)
    corpus = root / "corpus"
    for source in SOURCES:
        for split, count in (("train", 6), ("validation", 2)):
            rows = [
                {"text": document(rng, f"{source}/{topic}" if topic else source), **({"topic": topic} if topic else {})}
                for topic in TOPICS.get(source, [None])
                for _ in range(count)
            ]
            write_rows(corpus / "data" / source / f"{split}.parquet", rows)
    for split, count in (("train", 3), ("validation", 1)):
        rows = [
            {"text": document(rng, f"synthesis/{discipline}"), "discipline": discipline}
            for discipline in DISCIPLINES
            for _ in range(count)
        ]
        write_rows(corpus / "data" / "synthesis-en" / f"{split}.parquet", rows)
    webinstruct = root / "WebInstructSub"
    write_rows(
        webinstruct / "data" / "train-00000-of-00001.parquet",
        [
            {
                "orig_question": "",
                "orig_answer": "",
                "question": document(rng, "webinstruct", 12),
                "answer": document(rng, "webinstruct", 20),
                "source": "socratic",
                "index": index,
            }
            for index in range(10)
        ],  # fmt: skip
    )
    cosmopedia = root / "cosmopedia"
    for subset in COSMOPEDIA_SUBSETS:
        write_rows(
            cosmopedia / "data" / subset / "train-00000-of-00001.parquet",
            [
                {
                    "prompt": "Write a textbook section.",
                    "text_token_length": 30,
                    "text": document(rng, "cosmopedia"),
                    "seed_data": subset,
                    "format": "textbook",
                    "audience": "college_students",
                }
                for _ in range(3)
            ],  # fmt: skip
        )
    tokenizer = word_tokenizer([word for group in GROUPS for word in vocabulary(group)])
    model_dir = root / "model"
    tiny_llama(len(tokenizer)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return {
        "corpus": str(corpus),
        "webinstruct": str(webinstruct),
        "cosmopedia": str(cosmopedia),
        "model": str(model_dir),
        "root": str(root),
    }


def group_of(block: list[int], token_groups: dict[int, str]) -> set[str]:
    """The groups whose words a block holds (EOS and other specials left out)."""
    return {token_groups[token] for token in block if token in token_groups}


@pytest.fixture(scope="module")
def token_groups(surrogate) -> dict[int, str]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(surrogate["model"])
    return {tokenizer.convert_tokens_to_ids(word): group for group in GROUPS for word in vocabulary(group)}


def tiny_config(config: Path, surrogate: dict[str, str], output: Path) -> Path:
    """A config extending `config` (`base_config`) with the tiny model, the local folders and a few steps."""
    values = read_config_file(config)
    options = values.get("source_options") or {}
    for option in options.values():
        if option.get("path") == "TIGER-Lab/WebInstructSub":
            option["path"] = surrogate["webinstruct"]
        elif option.get("path") == "HuggingFaceTB/cosmopedia":
            option["path"] = surrogate["cosmopedia"]
    tokens = MAX_LENGTH * BATCH * STEPS
    # A stage that re-weights every few steps keeps its own round; the others get a round of two steps.
    round_tokens = MAX_LENGTH * BATCH * 2
    stages = [
        {**stage, "num_tokens": tokens, **({"mixture_round_steps": 2} if "mixture_round_steps" in stage else {})}
        for stage in values["stages"]
    ]
    stage_rounds = any("mixture_round_steps" in stage for stage in stages)
    overrides = {
        "base_config": str(config),
        "model_name_or_path": surrogate["model"],
        "dataset_path": surrogate["corpus"],
        "output_dir": str(output),
        "max_length": MAX_LENGTH,
        "per_device_train_batch_size": BATCH,
        "gradient_accumulation_steps": 1,
        "bf16": False,
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 1,
        "activation_checkpointing": False,
        "num_proc": None,
        "eval_benchmarks": None,
        "topic_classifier": None,  # the tiny corpus carries its topics
        "eval_batch_size": 4,
        **({} if stage_rounds else {"mixture_round_tokens": round_tokens}),
        "stages": stages,
        **({"source_options": options} if options else {}),
    }
    path = output.parent / f"{output.name}.yaml"
    path.write_text(yaml.safe_dump(overrides))
    return path


def needs_wordnet(config: Path) -> None:
    """Skip a corruption of nouns and adjectives when WordNet is not installed (CI requires it)."""
    options = (read_config_file(config).get("source_options") or {}).values()
    if any((option.get("corruption") or {}).get("fraction", 0) > 0 for option in options):
        from conftest import wordnet_or_skip

        wordnet_or_skip(None)


def run_recipe(config: Path) -> None:
    runpy.run_path(str(RECIPE))["main"](["--config", str(config)])


@pytest.mark.parametrize("config", [SURROGATE, *ABLATIONS], ids=lambda path: path.stem)
def test_each_ablation_config_runs_at_tiny_scale_with_its_mixture(config, surrogate, token_groups, tmp_path):
    needs_wordnet(config)
    output = tmp_path / config.stem
    run_recipe(tiny_config(config, surrogate, output))
    assert (output / "final_model" / "model.safetensors").is_file()
    stage = StageConfig.from_dict(read_config_file(config)["stages"][0], 0)
    recipe = json.loads((output / "final_model" / "data_recipe.json").read_text())[stage.name]
    assert recipe["tokens_consumed"] == MAX_LENGTH * BATCH * STEPS
    for source, ratio in stage.ratios.items():
        entry = recipe["sources"][source]
        assert entry["target_ratio"] == pytest.approx(ratio)
        assert abs(entry["tokens_consumed"] - ratio * recipe["tokens_consumed"]) <= MAX_LENGTH, source
    options = (read_config_file(config).get("source_options") or {}).get("synthesis-en")
    if options:
        record = json.loads((output / "derived_sources" / "data" / "synthesis-en" / RECORD_NAME).read_text())
        if "corruption" in options:
            fraction = options["corruption"]["fraction"]
            assert record["corruption"]["of"] == 3 * len(DISCIPLINES)
            assert record["corruption"]["corrupted"] == round(fraction * 3 * len(DISCIPLINES))
        if "keep" in options:
            assert record["written"]["train"] == 3 * len(options["keep"]["discipline"])
        if "path" in options:
            assert record["read_from"] in (surrogate["webinstruct"], surrogate["cosmopedia"])
    values = read_config_file(config)
    if values.get("curriculum_order") in ("LH", "HL"):  # orders by perplexity log the group each topic reached
        progress = json.loads((output / "cpt_5b" / "curriculum.json").read_text())
        assert progress["order"] == values["curriculum_order"]
        assert progress["topics"]
        assert {topic.split("/")[0] for topic in progress["topics"]} <= set(values["curriculum_topics"])


@pytest.mark.parametrize("name", ["webinstruct", "cosmopedia"])
def test_alternative_synthetic_source_replaces_synthesis_en_through_the_loader(name, surrogate, token_groups, tmp_path):
    """WebInstruct's question + answer (or Cosmopedia's text) become synthesis-en's documents, nothing else."""
    config = read_config_file(ROOT / "recipes" / "configs" / "ablations" / f"tinyllama_{name}.yaml")
    values = dict(config["source_options"]["synthesis-en"], path=surrogate[name], label="synthesis-en")
    options = {"synthesis-en": SourceOptions(**values)}
    paths = derive_sources(options, surrogate["corpus"], tmp_path)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(surrogate["model"])
    corpus = load_corpus(surrogate["corpus"], ["synthesis-en", "book-en"], tokenizer, MAX_LENGTH, source_paths=paths)
    names = corpus.group_names
    groups = read_group_ids(corpus.train)
    synthetic = [corpus.train[int(i)]["input_ids"] for i in np.flatnonzero(groups == names.index("synthesis-en"))]
    assert synthetic
    assert set().union(*(group_of(block, token_groups) for block in synthetic)) == {name}


def test_pack_by_discipline_makes_single_discipline_blocks_of_one_group(surrogate, token_groups, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(surrogate["model"])
    options = {"synthesis-en": SourceOptions(keep={"discipline": ["physics", "biology", "chemistry"]},
                                             pack_by="discipline")}  # fmt: skip
    paths = derive_sources(options, surrogate["corpus"], tmp_path)
    corpus = load_corpus(
        surrogate["corpus"],
        ["synthesis-en"],
        tokenizer,
        MAX_LENGTH,
        source_paths=paths,
        pack_by={"synthesis-en": "discipline"},
    )
    assert corpus.group_names == ["synthesis-en"]  # one group for the mixture
    assert sorted(set(corpus.block_labels)) == ["biology", "chemistry", "physics"]
    for index, label in enumerate(corpus.block_labels):
        assert group_of(corpus.train[index]["input_ids"], token_groups) == {f"synthesis/{label}"}
    assert corpus.validation is not None and set(read_group_ids(corpus.validation)) == {0}


@pytest.mark.parametrize("order", list(DISCIPLINE_ORDERS))
def test_discipline_curriculum_plays_the_packed_disciplines_in_order(
    order, surrogate, token_groups, tmp_path, monkeypatch
):
    """A stage with `curriculum_order: PB` draws every physics block before any biology or chemistry one: the
    disciplines reach the curriculum from the corpus, without `disciplines=` passed by hand."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(surrogate["model"])
    options = {"synthesis-en": SourceOptions(keep={"discipline": ["physics", "biology", "chemistry"]},
                                             pack_by="discipline")}  # fmt: skip
    corpus = load_corpus(
        surrogate["corpus"], ["synthesis-en"], tokenizer, MAX_LENGTH,
        source_paths=derive_sources(options, surrogate["corpus"], tmp_path), pack_by={"synthesis-en": "discipline"},
    )  # fmt: skip
    trainers = []

    class Recording(RecordingTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            trainers.append(self)

    monkeypatch.setattr(hf_cpt.stages, "CPTTrainer", Recording)
    blocks = len(corpus.train)
    stage = StageConfig(
        "synthetic", num_tokens=MAX_LENGTH * blocks, mixture={"synthesis-en": 1.0},
        overrides={"curriculum_order": order, "curriculum_topics": ["synthesis-en"]},
    )  # fmt: skip
    config = micro_config(tmp_path / "run", max_length=MAX_LENGTH, per_device_train_batch_size=1)
    run_stage(stage, tiny_llama(len(tokenizer)), tokenizer, corpus, config)
    seen = [group_of(block, token_groups) for block in trainers[0].seen]
    assert len(seen) == blocks
    phases = DISCIPLINE_ORDERS[order]
    # Walk the phases: each block belongs to the current phase or a later one, never an earlier one.
    phase = 0
    for disciplines in seen:
        (discipline,) = disciplines
        while discipline.split("/")[1] not in phases[phase]:
            phase += 1
            assert phase < len(phases), f"{order}: {discipline} came after its phase"
    assert phase == len(phases) - 1


def test_compare_writes_one_table_and_one_plot_over_runs(surrogate, tmp_path):
    """`hf-cpt compare` over two runs: the benchmark scores, the §4.2 averages and the per-source perplexity of the
    last evaluation point, one row per run (the model before CPT first), and a PNG."""
    real = tmp_path / "real"
    run_recipe(tiny_config(SURROGATE, surrogate, real))
    tables = json.loads((real / "validation_perplexity.json").read_text())
    scores = {
        "five_b_normal": {"mmlu": 28.35, "ceval": 30.02, "cmmlu": 29.10, "scieval": 38.64, "sciq": 56.10,
                          "arc_easy": 37.75, "arc_challenge": 30.55},
        "five_b_syn": {"mmlu": 31.89, "ceval": 34.60, "cmmlu": 35.09, "scieval": 40.90, "sciq": 60.30,
                       "arc_easy": 45.45, "arc_challenge": 34.13},
    }  # fmt: skip
    runs = []
    for index, (name, values) in enumerate(scores.items()):
        run = tmp_path / name
        run.mkdir()
        scaled = {label: {group: {**entry, "nll": entry["nll"] * (1 + index)} for group, entry in table.items()}
                  for label, table in tables.items()}  # fmt: skip
        (run / "validation_perplexity.json").write_text(json.dumps(scaled))
        (run / "evaluation_after.json").write_text(json.dumps({"scores": values}))
        (run / "evaluation_before.json").write_text(json.dumps({"scores": dict.fromkeys(values, 25.0)}))
        runs.append(run)
    output = tmp_path / "compared"
    cli_main(["compare", *map(str, runs), "--output", str(output)])
    table = (output / "comparison.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    body = {cells[0]: dict(zip(header, cells, strict=True)) for cells in
            ([cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:])}  # fmt: skip
    assert list(body) == ["before CPT", "five_b_normal", "five_b_syn"]
    syn = scores["five_b_syn"]
    assert float(body["five_b_syn"]["major avg"]) == pytest.approx(
        (syn["ceval"] + syn["cmmlu"] + syn["mmlu"]) / 3, abs=0.01
    )
    arc = (syn["arc_easy"] + syn["arc_challenge"]) / 2
    assert float(body["five_b_syn"]["scientific avg"]) == pytest.approx(
        (syn["scieval"] + syn["sciq"] + arc) / 3, abs=0.01
    )
    last = list(tables)[-1]
    for source, value in perplexity_by_source(tables[last]).items():
        assert float(body["five_b_normal"][f"ppl {source}"]) == pytest.approx(value, abs=0.01)
        assert float(body["five_b_syn"][f"ppl {source}"]) == pytest.approx(math.exp(2 * math.log(value)), rel=1e-3)
    for source, value in perplexity_by_source(tables["before"]).items():
        assert float(body["before CPT"][f"ppl {source}"]) == pytest.approx(value, abs=0.01)
    assert (output / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

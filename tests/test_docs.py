"""Every ```python block of README.md and docs/*.md runs as written.

The blocks of a page run in page order in one fresh Python process (a page builds on its earlier blocks, as
a reader does), in an empty folder, with the embedded default model replaced by the tiny stand-in of
`hf_cpt.testing` (`HF_CPT_CACHE` pointing at a cache that holds it), so a page takes seconds. A block is
skipped only after an explicit `<!-- not run: reason -->` line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tokenize
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import pytest
from conftest import wordnet_or_skip

from hf_cpt.testing import write_tiny_embedded_model

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(?P<code>.*?)^```$", re.S | re.M)
NOT_RUN = re.compile(r"<!-- not run: (?P<reason>[^>]+?) -->\s*$")

# Runs the blocks given as JSON ([[label, code], ...]) in one namespace; a failing block's label heads its
# traceback, since each block is compiled under its label as file name.
RUNNER = """
import json, sys
namespace = {"__name__": "__main__"}
for label, code in json.load(open(sys.argv[1], encoding="utf-8")):
    print(f"running {label}", flush=True)
    exec(compile(code, label, "exec"), namespace)
"""


@dataclass
class Block:
    label: str  # page and line, e.g. docs/curriculum.md:28
    code: str
    not_run: str | None  # the reason given in the marker line before the block


def python_blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    blocks = []
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = NOT_RUN.search(before)
        blocks.append(Block(f"{page.relative_to(ROOT)}:{line}", match["code"], marker["reason"] if marker else None))
    return blocks


def ellipsis_lines(code: str) -> list[int]:
    """Lines of the code where `...` stands as code (a placeholder), not inside a comment or a string."""
    tokens = tokenize.generate_tokens(StringIO(code).readline)
    return [token.start[0] for token in tokens if token.type == tokenize.OP and token.string == "..."]


RUNNABLE_PAGES = [page for page in PAGES if any(block.not_run is None for block in python_blocks(page))]


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("hf_cpt_cache")
    write_tiny_embedded_model(cache)
    return cache


def test_every_page_with_code_is_found_and_few_blocks_are_exempt():
    blocks = [block for page in PAGES for block in python_blocks(page)]
    assert {page.name for page in RUNNABLE_PAGES} == {
        "README.md",
        "curriculum.md",
        "synth.md",
        "topic_mixture.md",
        "topics.md",
    }
    exempt = {block.label: block.not_run for block in blocks if block.not_run}
    assert list(exempt) == ["docs/evaluation.md:18"], exempt


@pytest.mark.parametrize("page", RUNNABLE_PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_python_blocks_of_the_page_run_as_written(page, tiny_cache, tmp_path):
    blocks = [block for block in python_blocks(page) if block.not_run is None]
    for block in blocks:
        assert ellipsis_lines(block.code) == [], f"{block.label} has a `...` placeholder; write what a user runs"
    if any("corrupt_dataset" in block.code for block in blocks):
        wordnet_or_skip(tmp_path / "nltk_data")  # the corruption transforms read WordNet
    (tmp_path / "blocks.json").write_text(json.dumps([[block.label, block.code] for block in blocks]))
    (tmp_path / "run_blocks.py").write_text(RUNNER)
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run(
        [sys.executable, str(tmp_path / "run_blocks.py"), str(tmp_path / "blocks.json")],
        cwd=work,
        env={**os.environ, "HF_CPT_CACHE": str(tiny_cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
        capture_output=True,
        text=True,
    )
    ran = [line.removeprefix("running ") for line in result.stdout.splitlines() if line.startswith("running ")]
    assert result.returncode == 0, f"{ran[-1] if ran else page} failed:\n{result.stderr[-5000:]}"
    assert ran == [block.label for block in blocks]


def test_the_stand_in_is_what_embedded_model_path_gives_under_its_cache(tiny_cache, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_cpt.modeling import embedded_model_path

    monkeypatch.setenv("HF_CPT_CACHE", str(tiny_cache))
    path = embedded_model_path()
    assert path == tiny_cache / "models" / "SmolLM2-135M-Instruct"
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert (model.config.hidden_size, model.config.num_hidden_layers, len(tokenizer)) == (64, 2, 49152)
    # After any input it predicts the end of text: generation examples stop at their first token.
    inputs = tokenizer(["The reaction of sodium with chlorine", "数学和物理"], return_tensors="pt", padding=True)
    with torch.no_grad():
        predicted = model(**inputs).logits.argmax(-1)
    assert (predicted == tokenizer.eos_token_id).all()

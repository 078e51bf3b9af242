"""The layering docs/architecture.md states, checked on the imports of the source tree."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "hf_cpt"


def parts_imported(folder: str) -> set[str]:
    """The first-level `hf_cpt` modules or packages imported anywhere under `folder` (module-level or inside)."""
    imported: set[str] = set()
    for path in (PACKAGE / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            imported.update(name.split(".")[1] for name in names if name.startswith("hf_cpt."))
    return imported - {folder}


def test_utils_imports_no_part_of_the_method():
    assert parts_imported("utils") == set()


@pytest.mark.parametrize(
    ("part", "siblings"),
    [
        ("topics", {"synth", "mixture", "curriculum", "evaluation"}),
        ("generation", {"synth", "topics", "mixture", "curriculum", "data", "evaluation"}),
        ("data", {"synth", "topics", "mixture", "curriculum", "generation", "evaluation"}),
        ("mixture", {"synth", "topics", "generation", "evaluation"}),
        ("curriculum", {"synth", "topics", "generation", "evaluation"}),
        ("evaluation", {"synth", "topics", "mixture", "curriculum", "generation"}),
    ],
)
def test_a_part_does_not_import_its_siblings(part, siblings):
    assert parts_imported(part) & siblings == set()

"""Without the WordNet database (a user without root), the corruption tests that need it are skipped with the
install advice and the others still run; with `HF_CPT_REQUIRE_WORDNET=1` (CI) a missing database fails them."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from conftest import wordnet_or_skip

CORRUPT_TESTS = Path(__file__).parent / "test_synth_corrupt.py"


@pytest.fixture
def no_wordnet(tmp_path, monkeypatch) -> Path:
    """The WordNet lookup pointed at an empty folder, with no copy in any nltk root or cache."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("WORDNET_DIR", str(empty))
    monkeypatch.setenv("HF_CPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NLTK_DATA", raising=False)
    monkeypatch.delenv("HF_CPT_REQUIRE_WORDNET", raising=False)
    return tmp_path


def test_missing_database_skips_with_the_install_advice(no_wordnet):
    with pytest.raises(pytest.skip.Exception) as skipped:
        wordnet_or_skip(no_wordnet / "nltk_data")
    assert "apt-get install wordnet-base wordnet-sense-index" in str(skipped.value)
    assert "scripts/install_wordnet.sh" in str(skipped.value)


def test_required_wordnet_turns_the_skip_into_the_error(no_wordnet, monkeypatch):
    monkeypatch.setenv("HF_CPT_REQUIRE_WORDNET", "1")
    with pytest.raises(FileNotFoundError, match="WordNet database not found"):
        wordnet_or_skip(no_wordnet / "nltk_data")


def test_corruption_tests_without_wordnet_skip_those_that_need_it_and_run_the_rest(no_wordnet):
    report = no_wordnet / "report.xml"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", str(CORRUPT_TESTS)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        cwd=no_wordnet,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    cases = list(ElementTree.parse(report).getroot().iter("testcase"))
    outcomes = {case.get("name"): [child.tag for child in case] for case in cases}
    skipped = sorted(name for name, children in outcomes.items() if "skipped" in children)
    passed = sorted(name for name, children in outcomes.items() if not children)
    # Every test taking the `wordnet` fixture (17 with the parametrised ones) is skipped; the 12 others pass.
    assert len(skipped) == 17 and len(passed) == 12 and len(outcomes) == 29
    assert "test_paper_example_swaps_every_chlorine_for_one_sibling" in skipped
    assert "test_numbers_alone_need_no_wordnet" in passed
    assert "test_missing_wordnet_database_says_how_to_install_it" in passed
    reasons = {child.get("message") for case in cases for child in case}
    assert len(reasons) == 1 and "apt-get install wordnet-base wordnet-sense-index" in reasons.pop()

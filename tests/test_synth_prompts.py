"""Prompt templates: the paper's Appendix B wording, versioning, the code QA demonstrations and their problems."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from datasets import Dataset

from hf_cpt.data import DEMO_CORPUS_PATH
from hf_cpt.generation.prompts import CODE_QA, PROMPTS, SCIENTIFIC_QA, TOPIC_LABELING, PromptTemplate
from hf_cpt.synth.parsing import parse_qa
from hf_cpt.synth.prompts import (
    DISCIPLINES,
    code_qa_messages,
    discipline_name,
    sample_code_examples,
    scientific_qa_messages,
)
from hf_cpt.topics import ENGLISH
from hf_cpt.topics.annotate import topic_labeling_messages

# Appendix B, "Prompt for Scientific QA Synthesis", copied from the paper with "Earth Science" and a snippet filled in.
EXPECTED_EARTH_SCIENCE_PROMPT = """Instruction

Please gain inspiration from the following Earth Science content to create a high-quality Earth Science problem and \
solution. Present your output in two distinct sections: [Problem] and [Solution].

Earth Science Content

Plate tectonics explains why earthquakes cluster along plate boundaries.
Most large earthquakes happen where plates converge.

Guidelines

[Problem]: This should be **completely self-contained**, providing all the contextual information one needs to \
understand and solve the problem.

[Solution]: Present a comprehensive, step-by-step solution that solves the problem **correctly** and educates the \
student, around 250-350 words long. Clearly articulate the reasoning and methods used at each step, providing insight \
into the problem-solving process. Take care to format any equations properly using LaTeX or appropriate notation."""

# Appendix B, "Prompt for Topic Labeling", with the paper's 11 English topics (Table 3) filled in.
ENGLISH_TOPICS = list(ENGLISH.topics)  # Table 3, checked against the paper in test_demo_assets
EXPECTED_TOPIC_PROMPT = (
    "I am categorizing a series of articles according to the following 11 topics. Next, I will give you an article, "
    "please select only one topic that the article is the most related to:\n"
    "\n"
    f"[Topics]: {'; '.join(ENGLISH_TOPICS)}\n"
    "\n"
    "[Article]: The central bank raised interest rates by half a point.\n"
    "\n"
    "Please only return the most related topic:"
)
LEETCODE = Path(DEMO_CORPUS_PATH, "snippets", "leetcode.jsonl")


def leetcode_rows() -> list[dict]:
    return [json.loads(line) for line in LEETCODE.read_text(encoding="utf-8").splitlines()]


def test_scientific_prompt_is_appendix_b_word_for_word():
    snippet = (
        "\n  Plate tectonics explains why earthquakes cluster along plate boundaries.\n"
        "Most large earthquakes happen where plates converge.  \n"
    )
    messages = scientific_qa_messages(snippet, "earth science")
    assert messages == [{"role": "user", "content": EXPECTED_EARTH_SCIENCE_PROMPT}]


@pytest.mark.parametrize("discipline", DISCIPLINES)
def test_scientific_prompt_fills_every_placeholder_for_each_discipline(discipline):
    content = scientific_qa_messages("Seed text about the discipline.", discipline)[0]["content"]
    name = discipline_name(discipline)
    assert f"the following {name} content to create a high-quality {name} problem" in content
    assert f"\n{name} Content\n\nSeed text about the discipline.\n" in content
    assert "{" not in content and "}" not in content and "Placeholder" not in content


def test_the_nine_disciplines_of_the_paper_with_display_names():
    assert DISCIPLINES == (
        "mathematics",
        "physics",
        "chemistry",
        "biology",
        "astronomy",
        "earth science",
        "medical science",
        "computer science",
        "general education",
    )
    assert discipline_name("medical science") == "Medical Science"
    assert discipline_name(" Earth Science ") == "Earth Science"


def test_unknown_discipline_and_empty_snippet_are_errors():
    with pytest.raises(ValueError, match="geology.*mathematics, physics.*general education"):
        scientific_qa_messages("Rocks form in three ways.", "geology")
    with pytest.raises(ValueError, match="snippet"):
        scientific_qa_messages(" \n\t", "physics")


def test_topic_prompt_is_appendix_b_word_for_word_with_the_topic_count_filled_in():
    article = "  The central bank raised interest rates by half a point.\n"
    assert topic_labeling_messages(article, ENGLISH_TOPICS) == [{"role": "user", "content": EXPECTED_TOPIC_PROMPT}]
    content = topic_labeling_messages("An article.", ["Arts", "Science", "Sports"], separator=", ")[0]["content"]
    assert "according to the following 3 topics." in content
    assert "[Topics]: Arts, Science, Sports\n" in content


@pytest.mark.parametrize(
    ("article", "topics", "field"),
    [("An article.", "Law and Policy", "topics"), ("An article.", [], "topics"), ("   ", ["Others"], "article")],
)
def test_topic_prompt_rejects_a_bare_string_no_topics_or_an_empty_article(article, topics, field):
    with pytest.raises(ValueError, match=field):
        topic_labeling_messages(article, topics)


def test_registry_holds_every_template_under_its_name_with_a_versioned_tag():
    assert PROMPTS == {"scientific_qa": SCIENTIFIC_QA, "code_qa": CODE_QA, "topic_labeling": TOPIC_LABELING}
    assert {name: template.version for name, template in PROMPTS.items()} == {
        "scientific_qa": "scientific_qa/v1",
        "code_qa": "code_qa/v1",
        "topic_labeling": "topic_labeling/v1",
    }
    with pytest.raises(ValueError, match="version"):
        PromptTemplate(name="scientific_qa", version="v2", text="x")


def test_fingerprints_differ_between_templates_and_track_any_change():
    fingerprints = {template.fingerprint for template in PROMPTS.values()}
    assert len(fingerprints) == len(PROMPTS)
    assert all(len(fingerprint) == 12 for fingerprint in fingerprints)
    same = PromptTemplate(SCIENTIFIC_QA.name, SCIENTIFIC_QA.version, SCIENTIFIC_QA.text)
    assert same.fingerprint == SCIENTIFIC_QA.fingerprint
    assert dataclasses.replace(SCIENTIFIC_QA, text=SCIENTIFIC_QA.text + " ").fingerprint != SCIENTIFIC_QA.fingerprint
    assert dataclasses.replace(SCIENTIFIC_QA, version="scientific_qa/v2").fingerprint != SCIENTIFIC_QA.fingerprint


def test_render_requires_exactly_the_template_fields():
    template = PromptTemplate("greeting", "greeting/v1", "Hello {name}, welcome to {place}.")
    assert template.fields == {"name", "place"}
    assert template.render(name="Ada", place="{here}") == "Hello Ada, welcome to {here}."
    with pytest.raises(ValueError, match="place"):
        template.render(name="Ada")
    with pytest.raises(ValueError, match="mood"):
        template.render(name="Ada", place="home", mood="glad")


def test_sampling_code_demonstrations_is_deterministic_in_the_seed():
    rows = leetcode_rows()
    titles = [[row["title"] for row in sample_code_examples(rows, 3, seed)] for seed in range(10)]
    assert titles == [[row["title"] for row in sample_code_examples(rows, 3, seed)] for seed in range(10)]
    assert all(len(set(draw)) == 3 for draw in titles)
    assert len({tuple(draw) for draw in titles}) > 1
    from_dataset = sample_code_examples(Dataset.from_list(rows), 3, seed=7)
    assert [row["title"] for row in from_dataset] == titles[7]


@pytest.mark.parametrize("k", [0, 9])
def test_sampling_more_demonstrations_than_problems_is_an_error(k):
    with pytest.raises(ValueError, match=f"k={k}"):
        sample_code_examples(leetcode_rows(), k, seed=0)


def test_code_prompt_shows_the_sampled_demonstrations_and_asks_for_one_new_problem():
    rows = leetcode_rows()
    chosen = sample_code_examples(rows, 3, seed=1)
    content = code_qa_messages(chosen)[0]["content"]
    assert content.startswith("Below are programming problems, each followed by its solution.")
    assert content.count("\nDemonstration ") == 3
    for number, row in enumerate(chosen, start=1):
        assert (
            f"Demonstration {number} ({row['difficulty']})\n\n[Problem]\n{row['title']}\n\n{row['content']}" in content
        )
        assert f"```python\n{row['python'].strip()}\n```" in content
        assert row["explanation"] in content
    assert not any(row["title"] in content for row in rows if row not in chosen)
    assert "create ONE new, high-quality programming problem that is different from all of them" in content
    assert "two distinct sections: [Problem] and [Solution]." in content


def test_a_demonstration_parses_back_into_its_problem_and_solution():
    """The demonstrations use the layout `parse_qa` reads, so a model that imitates them is parsable."""
    row = leetcode_rows()[0]
    block = code_qa_messages([row])[0]["content"].split("Demonstration 1 (Easy)\n\n", 1)[1].split("\n\nPlease gain")[0]
    problem, solution = parse_qa(block)
    assert problem == f"{row['title']}\n\n{row['content']}"
    assert solution == f"{row['explanation']}\n\n```python\n{row['python'].strip()}\n```"


def test_code_prompt_keeps_an_already_fenced_solution_and_needs_the_core_columns():
    fenced = {
        "title": "Sum",
        "content": "Add two numbers.",
        "python": "```python\ndef add(a, b):\n    return a + b\n```",
    }
    content = code_qa_messages([fenced])[0]["content"]
    assert "Demonstration 1\n\n[Problem]\nSum\n\nAdd two numbers.\n\n[Solution]\n```python\ndef add" in content
    assert content.count("```python") == 2  # the demonstration's own fence and the guideline's mention
    with pytest.raises(ValueError, match="example 1 lacks python"):
        code_qa_messages([{"title": "Sum", "content": "Add two numbers."}])
    with pytest.raises(ValueError, match="examples"):
        code_qa_messages([])


def test_demo_problems_are_complete_short_and_uniquely_numbered():
    rows = leetcode_rows()
    assert [row["id"] for row in rows] == list(range(1, 9))
    assert len({row["slug"] for row in rows}) == 8
    assert {row["difficulty"] for row in rows} == {"Easy", "Medium", "Hard"}
    for row in rows:
        assert set(row) == {
            "id",
            "slug",
            "title",
            "difficulty",
            "content",
            "python",
            "explanation",
            "entry_point",
            "tests",
        }
        assert len(row["content"].split()) <= 120
        assert "Example 1:" in row["content"] and "Constraints:" in row["content"]
        assert 2 <= row["explanation"].count(". ") + 1 <= 4


@pytest.mark.parametrize("row", leetcode_rows(), ids=lambda row: row["slug"])
def test_demo_solution_passes_the_examples_in_its_statement(row):
    namespace: dict = {}
    exec(compile(row["python"], row["slug"], "exec"), namespace)  # noqa: S102 - the bundled solution under test
    solve = namespace[row["entry_point"]]
    assert row["tests"]
    for case in row["tests"]:
        arguments, expected = json.loads(case["input"]), json.loads(case["output"])
        assert solve(*arguments) == expected
        assert f"Output: {case['output']}" in row["content"]

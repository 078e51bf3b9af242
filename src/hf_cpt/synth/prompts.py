"""The conversations that ask an LLM for QA pairs (§3.3): scientific QA from a seed snippet, code QA from examples.

The templates themselves, word for word from the paper's Appendix B where it gives them, are in
`hf_cpt.generation.prompts`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from hf_cpt.generation.prompts import CODE_QA, SCIENTIFIC_QA

if TYPE_CHECKING:
    import datasets

__all__ = [
    "DISCIPLINES",
    "DISCIPLINE_NAMES",
    "code_qa_messages",
    "discipline_name",
    "sample_code_examples",
    "scientific_qa_messages",
]


# §3.3: the nine disciplines, keyed as the data's `discipline` column spells them, with the name the prompt shows.
DISCIPLINE_NAMES: dict[str, str] = {
    "mathematics": "Mathematics",
    "physics": "Physics",
    "chemistry": "Chemistry",
    "biology": "Biology",
    "astronomy": "Astronomy",
    "earth science": "Earth Science",
    "medical science": "Medical Science",
    "computer science": "Computer Science",
    "general education": "General Education",
}
DISCIPLINES: tuple[str, ...] = tuple(DISCIPLINE_NAMES)

# Columns of a code problem as `greengerong/leetcode` (the paper's source) names them.
_REQUIRED_CODE_COLUMNS = ("title", "content", "python")


def discipline_name(discipline: str) -> str:
    """The display name of a discipline key, so that data keys and prompt wording cannot drift apart."""
    key = discipline.strip().lower()
    if key not in DISCIPLINE_NAMES:
        raise ValueError(f"discipline {discipline!r} is unknown; use one of {', '.join(DISCIPLINES)}.")
    return DISCIPLINE_NAMES[key]


def scientific_qa_messages(snippet: str, discipline: str) -> list[dict[str, str]]:
    """The chat for synthesising one scientific QA pair from a seed snippet: a single user turn, as in the paper."""
    if not snippet.strip():
        raise ValueError("snippet is empty; pass the seed text the QA pair should be inspired by.")
    content = SCIENTIFIC_QA.render(discipline=discipline_name(discipline), snippet=snippet.strip())
    return [{"role": "user", "content": content}]


def sample_code_examples(
    problems: datasets.Dataset | Sequence[Mapping[str, object]], k: int, seed: int
) -> list[dict[str, object]]:
    """k distinct problems drawn at random as demonstrations; the same seed always draws the same ones.

    Determinism matters because a synthetic code corpus must be regenerable from its recorded seeds.
    """
    if not 1 <= k <= len(problems):
        raise ValueError(f"k={k} must be between 1 and the number of problems ({len(problems)}); lower k.")
    indices = random.Random(seed).sample(range(len(problems)), k)
    return [dict(problems[index]) for index in indices]


def _render_code_example(number: int, example: Mapping[str, object]) -> str:
    """One demonstration in the [Problem] / [Solution] layout the model is asked to imitate.

    Some LeetCode dumps store the `python` column as markdown, already fenced and mixed with its explanation; such a
    value is used as it is. Bare code is fenced, after its `explanation` when the row has one.
    """
    missing = [column for column in _REQUIRED_CODE_COLUMNS if not str(example.get(column) or "").strip()]
    if missing:
        raise ValueError(f"example {number} lacks {', '.join(missing)}; every example needs title, content and python.")
    difficulty = str(example.get("difficulty") or "").strip()
    header = f"Demonstration {number}" + (f" ({difficulty})" if difficulty else "")
    code = str(example["python"]).strip()
    if "```" in code:
        solution = code
    else:
        explanation = str(example.get("explanation") or "").strip()
        solution = (explanation + "\n\n" if explanation else "") + f"```python\n{code}\n```"
    title, content = str(example["title"]).strip(), str(example["content"]).strip()
    return f"{header}\n\n[Problem]\n{title}\n\n{content}\n\n[Solution]\n{solution}"


def code_qa_messages(examples: Sequence[Mapping[str, object]]) -> list[dict[str, str]]:
    """The chat for synthesising one code QA pair from demonstrations (see `sample_code_examples`)."""
    if not examples:
        raise ValueError("examples is empty; pass at least one demonstration problem.")
    rendered = "\n\n".join(_render_code_example(number, example) for number, example in enumerate(examples, start=1))
    return [{"role": "user", "content": CODE_QA.render(examples=rendered)}]

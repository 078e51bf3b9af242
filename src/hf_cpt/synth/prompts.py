"""Versioned prompt templates for synthetic QA generation (§3.3) and topic labelling (§3.2.1).

The scientific QA and topic labelling prompts are Appendix B of "Towards Effective and Efficient Continual
Pre-training of Large Language Models" (Chen et al., 2024, arXiv:2407.18743), the Llama-3-SynE report. They are
reproduced word for word: the synthetic data, and the topic labels a classifier learns from, depend on the exact
wording, so paraphrasing them would make the reproduction unfaithful. Only the placeholders change, into format
fields. The paper gives no text for its code QA prompt (§3.3 only says that LeetCode problems serve as in-context
demonstrations), so `code_qa` is hf-cpt's own.

Every template carries a version (`"scientific_qa/v1"`) and a fingerprint of its text, which generated records store
so that a dataset can always be traced back to the exact prompt that produced it.
"""

from __future__ import annotations

import hashlib
import random
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datasets

__all__ = [
    "CODE_QA",
    "DISCIPLINES",
    "DISCIPLINE_NAMES",
    "PROMPTS",
    "SCIENTIFIC_QA",
    "TOPIC_LABELING",
    "PromptTemplate",
    "code_qa_messages",
    "discipline_name",
    "sample_code_examples",
    "scientific_qa_messages",
    "topic_labeling_messages",
]


@dataclass(frozen=True)
class PromptTemplate:
    """A named, versioned prompt whose `{field}` placeholders are filled by `render`.

    Frozen because a template is an identity: changing its text must mean a new version, and the fingerprint lets
    outputs detect a silent edit that forgot to bump it.
    """

    name: str
    version: str
    text: str

    def __post_init__(self) -> None:
        if not self.version.startswith(f"{self.name}/"):
            raise ValueError(f"version {self.version!r} must start with the template name, e.g. '{self.name}/v1'.")

    @property
    def fields(self) -> frozenset[str]:
        """The placeholder names that `render` requires."""
        return frozenset(name for _, name, _, _ in string.Formatter().parse(self.text) if name)

    @property
    def fingerprint(self) -> str:
        """A short hash of name, version and text: equal fingerprints mean byte-identical prompts."""
        payload = "\0".join((self.name, self.version, self.text)).encode("utf-8")
        return hashlib.sha256(payload).hexdigest()[:12]

    def render(self, **fields: object) -> str:
        """The prompt with every placeholder filled; a missing or unexpected field is an error, not a blank."""
        missing = self.fields - fields.keys()
        if missing:
            raise ValueError(f"fields {sorted(missing)} are missing for prompt {self.version!r}; pass them to render.")
        unexpected = fields.keys() - self.fields
        if unexpected:
            raise ValueError(
                f"fields {sorted(unexpected)} are not placeholders of prompt {self.version!r}; "
                f"pass only {sorted(self.fields)}."
            )
        return self.text.format_map(fields)


# Appendix B, "Prompt for Scientific QA Synthesis", word for word. The paper's "{Discipline Placeholder} Content
# {Seed Snippet Placeholder}" line is laid out as a heading followed by the snippet on its own lines.
SCIENTIFIC_QA = PromptTemplate(
    name="scientific_qa",
    version="scientific_qa/v1",
    text=(
        "Instruction\n"
        "\n"
        "Please gain inspiration from the following {discipline} content to create a high-quality {discipline} "
        "problem and solution. Present your output in two distinct sections: [Problem] and [Solution].\n"
        "\n"
        "{discipline} Content\n"
        "\n"
        "{snippet}\n"
        "\n"
        "Guidelines\n"
        "\n"
        "[Problem]: This should be **completely self-contained**, providing all the contextual information one needs "
        "to understand and solve the problem.\n"
        "\n"
        "[Solution]: Present a comprehensive, step-by-step solution that solves the problem **correctly** and "
        "educates the student, around 250-350 words long. Clearly articulate the reasoning and methods used at each "
        "step, providing insight into the problem-solving process. Take care to format any equations properly using "
        "LaTeX or appropriate notation."
    ),
)

# hf-cpt's own code QA prompt (the paper gives none): k LeetCode-style demonstrations, then a request for one new
# problem in the same [Problem] / [Solution] layout that `hf_cpt.synth.parsing` reads.
CODE_QA = PromptTemplate(
    name="code_qa",
    version="code_qa/v1",
    text=(
        "Below are programming problems, each followed by its solution. Every problem is given in a [Problem] section "
        "and its solution in a [Solution] section that explains the approach and then gives Python code in a fenced "
        "code block.\n"
        "\n"
        "{examples}\n"
        "\n"
        "Please gain inspiration from the problems above to create ONE new, high-quality programming problem that is "
        "different from all of them, and solve it. Present your output in two distinct sections: [Problem] and "
        "[Solution].\n"
        "\n"
        "Guidelines\n"
        "\n"
        "[Problem]: This should be completely self-contained: state the task, the input and the expected output, "
        "give one or two examples, and list the constraints.\n"
        "\n"
        "[Solution]: Explain the approach step by step and state its time complexity, then give a correct Python "
        "solution in a ```python fenced code block."
    ),
)

# Appendix B, "Prompt for Topic Labeling", word for word; the paper's fixed "11 topics" becomes a count field so
# that the Chinese taxonomy (13 topics) and custom taxonomies use the same wording.
TOPIC_LABELING = PromptTemplate(
    name="topic_labeling",
    version="topic_labeling/v1",
    text=(
        "I am categorizing a series of articles according to the following {topic_count} topics. Next, I will give "
        "you an article, please select only one topic that the article is the most related to:\n"
        "\n"
        "[Topics]: {topics}\n"
        "\n"
        "[Article]: {article}\n"
        "\n"
        "Please only return the most related topic:"
    ),
)

PROMPTS: dict[str, PromptTemplate] = {template.name: template for template in (SCIENTIFIC_QA, CODE_QA, TOPIC_LABELING)}

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


def topic_labeling_messages(article: str, topics: Sequence[str], separator: str = "; ") -> list[dict[str, str]]:
    """The zero-shot chat asking a model for the one topic an article belongs to (§3.2.1, Appendix B)."""
    if isinstance(topics, str):
        raise ValueError("topics is a single string; pass a list of topic names.")
    if not topics:
        raise ValueError("topics is empty; pass the taxonomy's topic names.")
    if not article.strip():
        raise ValueError("article is empty; pass the text of the web page to label.")
    content = TOPIC_LABELING.render(topic_count=len(topics), topics=separator.join(topics), article=article.strip())
    return [{"role": "user", "content": content}]

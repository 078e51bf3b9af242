"""Every prompt template hf-cpt sends to an LLM, versioned: scientific QA and code QA (§3.3), topic labeling (§3.2.1).

The scientific QA and topic labeling prompts are Appendix B of "Towards Effective and Efficient Continual
Pre-training of Large Language Models" (Chen et al., 2024, arXiv:2407.18743), the Llama-3-SynE report. They are
reproduced word for word: the synthetic data, and the topic labels a classifier learns from, depend on the exact
wording, so paraphrasing them would make the reproduction unfaithful. Only the placeholders change, into format
fields. The paper gives no text for its code QA prompt (§3.3 only says that LeetCode problems serve as in-context
demonstrations), so `code_qa` is hf-cpt's own.

Every template carries a version (`"scientific_qa/v1"`) and a fingerprint of its text, which generated records store
so that a dataset can always be traced back to the exact prompt that produced it. The conversations built from them
live with their use: `hf_cpt.synth.prompts` (QA) and `hf_cpt.topics.annotate` (topic labeling).
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass

__all__ = ["CODE_QA", "PROMPTS", "SCIENTIFIC_QA", "TOPIC_LABELING", "PromptTemplate"]


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

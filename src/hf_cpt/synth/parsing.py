"""Reading synthetic QA pairs out of raw model output, and deciding whether to keep them (§3.3).

Parsing and validation are separate on purpose: `parse_qa` only answers "where are the problem and the solution?",
while `validate_qa` answers "is this pair worth training on?". Keeping them apart lets a generator report *why* a
pair was dropped, and `accept_rates` turn those reasons into per-discipline statistics that show which prompts or
disciplines waste generation budget.

Labels that `parse_qa` recognises, case-insensitively, at the start of a line outside fenced code blocks:

- `[Problem]` / `[Solution]`, with or without a following colon, the text may continue on the same line;
- `Problem:` / `Solution:`, the bare word alone on a line, or a markdown heading (`## Problem`);
- the same wrapped in emphasis: `**Problem:**`, `**Problem**:`, `__Solution__`;
- `Question` and `Answer` as synonyms of `Problem` and `Solution`, since models often fall back to them;
- any of these followed by `Statement` or `Description` (`### Problem Statement`, `[Problem Description]`).

A word followed by anything but a colon (`Solution steps:`, `Problem solved.`) is ordinary text. Each section runs
until the first label of the *other* kind, so a solution may say `Answer: 42` or `Solution:` again without being
cut, while a second problem after the solution ends it (only the first pair is kept). Sections may come in either
order. Chatter that models add around the pair is dropped: anything before the first label ("Sure! Here is ..."),
and trailing lines of a section that are sign-offs ("I hope this helps!"), lead-ins ("Here is the solution:") or
horizontal rules.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "REJECT_REASONS",
    "QACheck",
    "accept_rates",
    "check_qa",
    "parse_qa",
    "validate_qa",
]

# Every reason a pair can be rejected for, with what it means; `accept_rates` reports counts under these codes.
REJECT_REASONS: dict[str, str] = {
    "unparsable": "the output has no recognisable problem and solution sections",
    "empty_problem": "the problem section is empty",
    "empty_solution": "the solution section is empty",
    "truncated_solution": "the solution stops mid-sentence or the backend stopped at its token limit",
    "too_short": "the problem or the solution has fewer words than the minimum",
    "echoed_prompt": "the problem or the solution repeats the prompt's own instructions",
    "copied_seed": "the problem repeats the seed snippet instead of building on it",
}

_KINDS = {"problem": "problem", "question": "problem", "solution": "solution", "answer": "solution"}
# Every optional piece starts with a distinct character, so that no two `[ \t]*` compete for the same blanks: a line
# of spaces must fail in linear time, not in quadratic backtracking.
_LABEL = re.compile(
    r"""[ \t]*
    (?:\#{1,6}[ \t]*)?
    (?:[*_]{1,3}[ \t]*)?
    (?:\[[ \t]*(?P<bracketed>problem|question|solution|answer)(?:[ \t]+(?:statement|description))?[ \t]*\]
      |(?P<word>problem|question|solution|answer)(?:[ \t]+(?:statement|description))?)
    [ \t]*(?:[*_]{1,3}[ \t]*)?(?P<colon>:)?[ \t]*(?:[*_]{1,3}[ \t]*)?
    (?P<rest>.*)""",
    re.IGNORECASE | re.VERBOSE,
)
_FENCE = re.compile(r"^\s*(```|~~~)")
_RULE = re.compile(r"^\s*([-*_=])(\s*\1){2,}\s*$")
_CHATTER = re.compile(
    r"^\s*(?:i\s+hope|hope\s+(?:this|that|it)|let\s+me\s+know|feel\s+free|please\s+let\s+me"
    r"|if\s+you\s+(?:have|need)\s+any|if\s+you(?:\s+would|'d)\s+like|happy\s+(?:learning|studying|coding|problem)"
    r"|good\s+luck|glad\s+to\s+help|i'd\s+be\s+happy)\b",
    re.IGNORECASE,
)
_LEAD_IN = re.compile(
    r"^\s*(?:sure|certainly|of\s+course|okay|ok|alright|great|here(?:\s+is|\s+are|'s)|below\s+is|now)\b.*:\s*$",
    re.IGNORECASE,
)
# Characters a finished solution can end on. Closing brackets, `$` and the backtick also cover the ends of LaTeX
# (`\]`, `\)`, `$$`, `\end{aligned}`), of code fences and of bold text.
_TERMINAL = (".", "!", "?", ")", "]", "}", '"', "'", "`", "*", "$", "|", "…", "。", "！", "？", "”", "’", "）")
_WORD = re.compile(r"\w+")
_SHINGLE = 3  # word n-gram size for the copy check: long enough that shared vocabulary alone is not a copy


def _label(line: str) -> tuple[str, str] | None:
    """(kind, text after the label) when a line opens a section, else None."""
    match = _LABEL.match(line)
    if match is None:
        return None
    rest = match["rest"].strip()
    if rest and not (match["bracketed"] or match["colon"]):
        return None  # "Problem solved." or "Solution steps: ...": a sentence, not a label
    return _KINDS[(match["bracketed"] or match["word"]).lower()], rest


def _strip_chatter(lines: list[str]) -> list[str]:
    """Drop trailing blank lines, horizontal rules, sign-offs and lead-ins ("Here is the solution:")."""
    lines = list(lines)
    while lines and (
        not lines[-1].strip() or _RULE.match(lines[-1]) or _CHATTER.match(lines[-1]) or _LEAD_IN.match(lines[-1])
    ):
        lines.pop()
    return lines


def parse_qa(raw: str) -> tuple[str, str] | None:
    """(problem, solution) from a model's raw output, or None when either section is missing or empty.

    Never raises: malformed generations are expected, and the caller should count them, not crash on them.
    """
    lines = raw.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    labels: list[tuple[int, str, str]] = []
    in_fence = False
    for index, line in enumerate(lines):
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (found := _label(line)) is not None:
            labels.append((index, *found))
    first = next(iter(labels), None)
    if first is None:
        return None
    second = next((label for label in labels if label[1] != first[1]), None)
    if second is None:
        return None
    end = next((label[0] for label in labels if label[0] > second[0] and label[1] == first[1]), len(lines))
    sections: dict[str, str] = {}
    for (start, kind, rest), stop in ((first, second[0]), (second, end)):
        body = _strip_chatter([rest, *lines[start + 1 : stop]])
        sections[kind] = "\n".join(body).strip()
    if not sections["problem"] or not sections["solution"]:
        return None
    return sections["problem"], sections["solution"]


def _words(text: str) -> list[str]:
    """Lower-cased runs of word characters: what the length and copy checks count, ignoring case, punctuation and
    spacing. (Matching texts against each other folds them with `hf_cpt.utils.text.normalize` instead.)"""
    return _WORD.findall(text.lower())


def _copy_overlap(problem: str, seed: str) -> float:
    """Share of the problem's word trigrams that also occur in the seed (1.0 = nothing new in the problem)."""
    problem_words, seed_words = _words(problem), _words(seed)
    size = min(_SHINGLE, len(problem_words))
    if size == 0:
        return 0.0
    problem_grams = {tuple(problem_words[i : i + size]) for i in range(len(problem_words) - size + 1)}
    seed_grams = {tuple(seed_words[i : i + size]) for i in range(len(seed_words) - size + 1)}
    return len(problem_grams & seed_grams) / len(problem_grams)


def _shares_span(text: str, other: str, span: int) -> bool:
    """Whether `text` and `other` have a run of `span` consecutive words in common."""
    text_words, other_words = _words(text), _words(other)
    other_grams = {tuple(other_words[i : i + span]) for i in range(len(other_words) - span + 1)}
    return any(tuple(text_words[i : i + span]) in other_grams for i in range(len(text_words) - span + 1))


def _is_truncated(solution: str) -> bool:
    """Whether the solution stops mid-sentence, mid-code-block or mid-equation."""
    text = solution.rstrip()
    if text.count("```") % 2 or text.count("$$") % 2:
        return True
    return not text.endswith(_TERMINAL)


def validate_qa(
    problem: str,
    solution: str,
    seed: str | None = None,
    *,
    finish_reason: str | None = None,
    min_problem_words: int = 5,
    min_solution_words: int = 20,
    copy_threshold: float = 0.9,
    instructions: str | None = None,
    echo_threshold: float = 0.5,
    echo_span: int = 6,
) -> str | None:
    """None when the pair is worth keeping, else the first reason code (a key of `REJECT_REASONS`) that applies.

    `finish_reason` is the backend's stop reason; "length" means generation hit its token limit, so the solution is
    cut even when it happens to end on a full stop. `copy_threshold` is the share of the problem's word trigrams
    found in `seed` at or above which the problem counts as copied (a problem contained verbatim in the seed has
    share 1.0). Copies matter because the paper's goal is new exercises *inspired* by the seed, not restatements.
    `instructions` is the prompt's own wording (without the seed): a problem or solution whose word trigrams are
    at least `echo_threshold` from it restates the guidelines instead of answering them, which small models do;
    so does one that carries any run of `echo_span` consecutive words of them (a guideline sentence pasted into an
    otherwise real problem, such as "This should be completely self-contained, providing all ...").
    """
    if not problem.strip():
        return "empty_problem"
    if not solution.strip():
        return "empty_solution"
    if finish_reason == "length" or _is_truncated(solution):
        return "truncated_solution"
    if len(_words(problem)) < min_problem_words or len(_words(solution)) < min_solution_words:
        return "too_short"
    if instructions is not None and any(
        _copy_overlap(part, instructions) >= echo_threshold or _shares_span(part, instructions, echo_span)
        for part in (problem, solution)
    ):
        return "echoed_prompt"
    if seed is not None and _copy_overlap(problem, seed) >= copy_threshold:
        return "copied_seed"
    return None


@dataclass(frozen=True)
class QACheck:
    """The outcome of parsing and validating one generation; `reject_reason` is None when it is accepted."""

    problem: str | None
    solution: str | None
    reject_reason: str | None

    @property
    def accepted(self) -> bool:
        """Whether the pair passed parsing and every validation check."""
        return self.reject_reason is None


def check_qa(
    raw: str, seed: str | None = None, finish_reason: str | None = None, instructions: str | None = None
) -> QACheck:
    """Parse and validate a raw generation with the default thresholds, for the common one-call case."""
    parsed = parse_qa(raw)
    if parsed is None:
        return QACheck(problem=None, solution=None, reject_reason="unparsable")
    problem, solution = parsed
    reason = validate_qa(problem, solution, seed, finish_reason=finish_reason, instructions=instructions)
    return QACheck(problem, solution, reason)


def accept_rates(
    records: Iterable[Mapping[str, object]], discipline_key: str = "discipline", reason_key: str = "reject_reason"
) -> dict[str, dict[str, object]]:
    """Per discipline: total, accepted, rate and counts per reject reason, as plain JSON-ready values.

    Each record needs a discipline and a reject reason (None when accepted), e.g. a generator's output rows.
    """
    totals: Counter[str] = Counter()
    accepted: Counter[str] = Counter()
    rejected: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for number, record in enumerate(records):
        for key in (discipline_key, reason_key):
            if key not in record:
                raise ValueError(f"record {number} has no {key!r} field; add it or pass the field's name.")
        discipline, reason = str(record[discipline_key]), record[reason_key]
        totals[discipline] += 1
        if reason is None:
            accepted[discipline] += 1
        else:
            rejected[discipline][str(reason)] += 1
    return {
        discipline: {
            "total": totals[discipline],
            "accepted": accepted[discipline],
            "rate": accepted[discipline] / totals[discipline],
            "rejected": dict(sorted(rejected[discipline].items())),
        }
        for discipline in sorted(totals)
    }

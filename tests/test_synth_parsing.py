"""Parsing and validating synthetic QA generations: realistic raw outputs, as models write them, in and out."""

from __future__ import annotations

import json

import pytest

from hf_cpt.synth.parsing import REJECT_REASONS, QACheck, accept_rates, check_qa, parse_qa, validate_qa

# Appendix A of the paper ("Good Case 1"): the seed snippet and the QA pair synthesised from it, verbatim.
PAPER_SEED = (
    "Given a system of oppositely charged layers, such as a double layer of ions in an electrolyte "
    "solution, explain why these layers do not combine (neutralize) with each other."
)
PAPER_PROBLEM = (
    "Given a system of oppositely charged layers, such as a double layer of ions in an electrolyte "
    "solution, explain why these layers do not combine (neutralize) with each other."
)
PAPER_SOLUTION = (
    "In a system of oppositely charged layers, such as a double layer of ions in an electrolyte solution,"
    " the layers do not combine (neutralize) due to the electrostatic repulsion between the ions. This "
    "repulsion arises from the Coulombic force, which is a fundamental force in nature that acts between "
    "charged particles.\n\n"
    "To understand this, let's consider a simple example of a positively charged cation (e.g., Na+) and a"
    " negatively charged anion (e.g., Cl-). When these ions are brought close together, they experience "
    "an electrostatic force that pushes them apart. This force can be calculated using Coulomb's law, "
    "which states that the electrostatic force (F) between two point charges (q1 and q2) separated by a "
    "distance (r) is given by: $F = k * (q1 * q2)/r^2$, where k is the Coulomb constant (approximately "
    "$8.99 \\times 10^9 Nm^2 C^{-2}$).\n\n"
    "In the case of an electrolyte solution, the ions are surrounded by a cloud of counter-ions (ions of "
    "opposite charge) that neutralize their charge locally. This cloud of counter-ions creates an "
    "electric double layer around each ion, which prevents the oppositely charged ions from coming too "
    "close to each other and neutralizing. The repulsion between these double layers is known as the "
    "electrostatic double layer repulsion.\n\n"
    "The thickness of the double layer is typically on the order of a few angstroms (Å), and the strength"
    " of the repulsion decreases rapidly as the distance between the layers increases. This repulsion is "
    "responsible for the stability of colloidal suspensions, the behavior of charged surfaces in contact "
    "with electrolyte solutions, and many other phenomena in surface chemistry and electrochemistry.\n\n"
    "In summary, the electrostatic repulsion between oppositely charged layers in a system, such as the "
    "double layer of ions in an electrolyte solution, prevents the layers from combining (neutralizing) "
    "with each other due to the Coulombic force. This repulsion arises from the electric double layer "
    "around each ion, which is created by the counterions that neutralize the charge locally. The "
    "thickness of the double layer and the strength of the repulsion depend on factors such as the ionic "
    "strength of the solution, the surface charge density, and the dielectric constant of the medium."
)

PAPER_RAW = f"[Problem] {PAPER_PROBLEM}\n\n[Solution] {PAPER_SOLUTION}"

MOLARITY_PROBLEM = (
    "A student dissolves 5.85 g of sodium chloride (NaCl) in enough water to make 250 mL of solution. "
    "What is the molarity of the solution?"
)
MOLARITY_SOLUTION = (
    "First, find the molar mass of NaCl: $M = 22.99 + 35.45 = 58.44$ g/mol.\n"
    "\n"
    "The number of moles is $n = 5.85 / 58.44 \\approx 0.100$ mol.\n"
    "\n"
    "Molarity is moles of solute per litre of solution, so $c = 0.100 / 0.250 = 0.400$ M."
)
KINEMATICS_PROBLEM = "A car accelerates uniformly from rest to 20 m/s in 8 s. How far does it travel in that time?"
KINEMATICS_SOLUTION = (
    "The acceleration is $a = \\Delta v / \\Delta t = 20 / 8 = 2.5$ m/s$^2$.\n"
    "\n"
    "Starting from rest, the distance is\n"
    "$$\n"
    "s = \\frac{1}{2} a t^2 = \\frac{1}{2} \\cdot 2.5 \\cdot 8^2 = 80 \\text{ m}\n"
    "$$\n"
    "so the car travels 80 m."
)
TRUNCATED_SOLUTION = (
    "The acceleration is $a = \\Delta v / \\Delta t = 20 / 8 = 2.5$ m/s$^2$. The distance travelled from rest "
    "is $s = \\frac{1}{2} a t^2$, so we substitute the values into the"
)
VOWELS_PROBLEM = "Write a function `count_vowels(s)` that returns the number of vowels in the string `s`."
VOWELS_SOLUTION = (
    "Walk over the characters once and count those that are vowels, in either case.\n"
    "\n"
    "```python\n"
    "def count_vowels(s):\n"
    "    # Problem: upper-case vowels must count too.\n"
    "    # Solution: compare against both cases.\n"
    '    return sum(ch in "aeiouAEIOU" for ch in s)\n'
    "```"
)

PARSE_CASES = [
    pytest.param(
        f"[Problem]\n{MOLARITY_PROBLEM}\n\n[Solution]\n{MOLARITY_SOLUTION}\n",
        (MOLARITY_PROBLEM, MOLARITY_SOLUTION),
        id="bracket-labels",
    ),
    pytest.param(
        f"[Problem]: {KINEMATICS_PROBLEM}\n\n[Solution]:\n{KINEMATICS_SOLUTION}",
        (KINEMATICS_PROBLEM, KINEMATICS_SOLUTION),
        id="bracket-labels-with-colons",
    ),
    pytest.param(
        f"[Problem]\n{MOLARITY_PROBLEM}\n\nTo solve this, we first need the molar mass of NaCl.",
        None,
        id="missing-solution-section",
    ),
    pytest.param(
        f"Here is the worked answer.\n\n[Solution]\n{MOLARITY_SOLUTION}",
        None,
        id="missing-problem-section",
    ),
    pytest.param(
        f"[Solution]\n{KINEMATICS_SOLUTION}\n\n[Problem]\n{KINEMATICS_PROBLEM}\n",
        (KINEMATICS_PROBLEM, KINEMATICS_SOLUTION),
        id="solution-before-problem",
    ),
    pytest.param(f"[Problem]\n{MOLARITY_PROBLEM}\n\n[Solution]\n\n   \n", None, id="empty-solution"),
    pytest.param(f"[Problem]\n\n[Solution]\n{MOLARITY_SOLUTION}", None, id="empty-problem"),
    pytest.param(
        "Sure! Here is a high-quality chemistry problem and solution inspired by the content:\n"
        "\n"
        f"[Problem]\n{MOLARITY_PROBLEM}\n"
        "\n"
        f"[Solution]\n{MOLARITY_SOLUTION}\n"
        "\n"
        "---\n"
        "\n"
        "I hope this helps! Let me know if you have any other questions.\n"
        "Feel free to ask for a harder version of this problem.",
        (MOLARITY_PROBLEM, MOLARITY_SOLUTION),
        id="chatter-before-and-after",
    ),
    pytest.param(
        f"**Problem:** {MOLARITY_PROBLEM}\n\nHere is the solution:\n\n**Solution:**\n{MOLARITY_SOLUTION}",
        (MOLARITY_PROBLEM, MOLARITY_SOLUTION),
        id="lead-in-between-sections",
    ),
    pytest.param(
        f"[Problem]\n{KINEMATICS_PROBLEM}\n\n[Solution]\n{TRUNCATED_SOLUTION}",
        (KINEMATICS_PROBLEM, TRUNCATED_SOLUTION),
        id="truncated-mid-sentence",
    ),
    pytest.param(
        f"## Problem\n\n{KINEMATICS_PROBLEM}\n\n### Solution\n\n{KINEMATICS_SOLUTION}\n",
        (KINEMATICS_PROBLEM, KINEMATICS_SOLUTION),
        id="markdown-headings",
    ),
    pytest.param(
        f"### Problem Statement\n{KINEMATICS_PROBLEM}\n\n### Solution\n{KINEMATICS_SOLUTION}",
        (KINEMATICS_PROBLEM, KINEMATICS_SOLUTION),
        id="markdown-heading-problem-statement",
    ),
    pytest.param(
        f"**Problem:**\n{MOLARITY_PROBLEM}\n\n**Solution:**\n{MOLARITY_SOLUTION}",
        (MOLARITY_PROBLEM, MOLARITY_SOLUTION),
        id="bold-labels-colon-inside",
    ),
    pytest.param(
        f"**Problem**: {MOLARITY_PROBLEM}\n\n**Solution**: {MOLARITY_SOLUTION}",
        (MOLARITY_PROBLEM, MOLARITY_SOLUTION),
        id="bold-labels-colon-outside",
    ),
    pytest.param(
        f"PROBLEM:\n{KINEMATICS_PROBLEM}\n\nSOLUTION:\n{KINEMATICS_SOLUTION}",
        (KINEMATICS_PROBLEM, KINEMATICS_SOLUTION),
        id="upper-case-labels",
    ),
    pytest.param(
        f"problem: {KINEMATICS_PROBLEM}\nsolution: {KINEMATICS_SOLUTION}",
        (KINEMATICS_PROBLEM, KINEMATICS_SOLUTION),
        id="lower-case-labels",
    ),
    pytest.param(
        "[Problem]\n"
        "Prove that the sum of two even integers is even.\n"
        "\n"
        "[Solution]\n"
        "This problem asks us to work directly from the definition of an even number.\n"
        "Problem-solving tip: write each even number as twice an integer.\n"
        "Let $a = 2m$ and $b = 2n$ for integers $m$ and $n$. Then $a + b = 2(m + n)$, which is twice an integer.\n"
        "Problem solved: the sum is even.",
        (
            "Prove that the sum of two even integers is even.",
            "This problem asks us to work directly from the definition of an even number.\n"
            "Problem-solving tip: write each even number as twice an integer.\n"
            "Let $a = 2m$ and $b = 2n$ for integers $m$ and $n$. Then $a + b = 2(m + n)$, which is twice an "
            "integer.\n"
            "Problem solved: the sum is even.",
        ),
        id="word-problem-inside-solution",
    ),
    pytest.param(
        "[Problem]\nSolve $2x + 3 = 11$ for $x$.\n\n[Solution]\nSolution steps:\n"
        "1. Subtract 3 from both sides: $2x = 8$.\n2. Divide both sides by 2: $x = 4$.\n\nAnswer: $x = 4$.",
        (
            "Solve $2x + 3 = 11$ for $x$.",
            "Solution steps:\n1. Subtract 3 from both sides: $2x = 8$.\n2. Divide both sides by 2: $x = 4$.\n\n"
            "Answer: $x = 4$.",
        ),
        id="solution-steps-and-answer-lines-stay-in-solution",
    ),
    pytest.param(
        f"[Problem]\n{VOWELS_PROBLEM}\n\n[Solution]\n{VOWELS_SOLUTION}\n",
        (VOWELS_PROBLEM, VOWELS_SOLUTION),
        id="labels-inside-code-fence-are-code",
    ),
    pytest.param(
        "[Problem]\r\nWhat is the pH of a 0.01 M HCl solution?\r\n\r\n[Solution]\r\n"
        "HCl is a strong acid, so $[H^+] = 0.01$ M.\r\nTherefore $pH = -\\log_{10}(0.01) = 2$.\r\n",
        (
            "What is the pH of a 0.01 M HCl solution?",
            "HCl is a strong acid, so $[H^+] = 0.01$ M.\nTherefore $pH = -\\log_{10}(0.01) = 2$.",
        ),
        id="windows-line-endings",
    ),
    pytest.param(
        "Question: Which planet in the solar system has the shortest day?\n"
        "Answer: Jupiter, which completes one rotation in about 9.9 hours.",
        (
            "Which planet in the solar system has the shortest day?",
            "Jupiter, which completes one rotation in about 9.9 hours.",
        ),
        id="question-answer-labels",
    ),
    pytest.param(
        f"[Problem]\n{MOLARITY_PROBLEM}\n\n[Solution]\n{MOLARITY_SOLUTION}\n\n"
        f"[Problem]\n{KINEMATICS_PROBLEM}\n\n[Solution]\n{KINEMATICS_SOLUTION}",
        (MOLARITY_PROBLEM, MOLARITY_SOLUTION),
        id="second-pair-is-dropped",
    ),
    pytest.param(
        "I will present my output in two distinct sections: [Problem] and [Solution]. A car accelerates "
        "uniformly from rest, and the distance follows from the kinematic equations.",
        None,
        id="labels-mentioned-only-inline",
    ),
    pytest.param(PAPER_RAW, (PAPER_PROBLEM, PAPER_SOLUTION), id="paper-appendix-a-example"),
]


@pytest.mark.parametrize(("raw", "expected"), PARSE_CASES)
def test_parse_qa_extracts_the_problem_and_solution_sections(raw, expected):
    assert parse_qa(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "\n",
        "\r\r\r",
        "#",
        "**",
        ":",
        "[Problem]",
        "[problem]:[solution]:",
        "[Solution]\n[Problem]\n",
        "```\n[Problem]\nx\n[Solution]\ny",
        "Problem:\nSolution:",
        "\x00[Problem]\x00\n[Solution]\x00",
        "é" * 1000,
    ],
)
def test_parse_qa_never_raises_and_never_returns_an_empty_part(raw):
    parsed = parse_qa(raw)
    assert parsed is None or (len(parsed) == 2 and all(part and part == part.strip() for part in parsed))


def test_the_papers_example_is_accepted_except_that_it_copies_its_seed():
    problem, solution = parse_qa(PAPER_RAW)
    assert validate_qa(problem, solution) is None
    assert validate_qa(problem, solution, PAPER_SEED) == "copied_seed"
    assert check_qa(PAPER_RAW, seed=PAPER_SEED) == QACheck(PAPER_PROBLEM, PAPER_SOLUTION, "copied_seed")


LONG_SOLUTION = (
    "Newton's second law relates the net force to the acceleration of the block. The net force is the applied "
    "force minus friction, $F_{net} = 10 - 4 = 6$ N, so the acceleration is $a = F_{net} / m = 6 / 2 = 3$ m/s$^2$."
)
BLOCK_PROBLEM = "A 2 kg block is pushed with 10 N against 4 N of friction. What is its acceleration?"


@pytest.mark.parametrize(
    ("problem", "solution", "kwargs", "reason"),
    [
        pytest.param(BLOCK_PROBLEM, LONG_SOLUTION, {}, None, id="accepted"),
        pytest.param("  \n", LONG_SOLUTION, {}, "empty_problem", id="empty-problem"),
        pytest.param(BLOCK_PROBLEM, "\n\t", {}, "empty_solution", id="empty-solution"),
        pytest.param(BLOCK_PROBLEM, LONG_SOLUTION[:-35], {}, "truncated_solution", id="ends-mid-sentence"),
        pytest.param(BLOCK_PROBLEM, LONG_SOLUTION + " Hence", {}, "truncated_solution", id="ends-on-a-word"),
        pytest.param(
            BLOCK_PROBLEM, LONG_SOLUTION, {"finish_reason": "length"}, "truncated_solution", id="hit-token-limit"
        ),
        pytest.param(BLOCK_PROBLEM, LONG_SOLUTION, {"finish_reason": "stop"}, None, id="stopped-normally"),
        pytest.param(
            BLOCK_PROBLEM, LONG_SOLUTION + "\n\n```python\nprint(6 / 2)", {}, "truncated_solution", id="open-fence"
        ),
        pytest.param(BLOCK_PROBLEM, LONG_SOLUTION + "\n\n```python\nprint(6 / 2)\n```", {}, None, id="closed-fence"),
        pytest.param(BLOCK_PROBLEM, LONG_SOLUTION + "\n$$\na = 3\n", {}, "truncated_solution", id="open-display-math"),
        pytest.param(BLOCK_PROBLEM, LONG_SOLUTION + "\n$$\na = 3\n$$", {}, None, id="closed-display-math"),
        pytest.param(BLOCK_PROBLEM, LONG_SOLUTION + "\n\\[ a = 3 \\]", {}, None, id="closed-bracket-math"),
        pytest.param(
            BLOCK_PROBLEM,
            LONG_SOLUTION + "\n\\begin{aligned} a &= 6 / 2 \\\\ &= 3 \\end{aligned}",
            {},
            None,
            id="closed-latex-environment",
        ),
        pytest.param(BLOCK_PROBLEM, "The acceleration is 3 m/s^2.", {}, "too_short", id="short-solution"),
        pytest.param(
            BLOCK_PROBLEM, "The acceleration is 3 m/s^2.", {"min_solution_words": 5}, None, id="lower-minimum"
        ),
        pytest.param("Find a.", LONG_SOLUTION, {}, "too_short", id="short-problem"),
    ],
)
def test_validate_qa_reports_the_reason_a_pair_is_rejected(problem, solution, kwargs, reason):
    assert validate_qa(problem, solution, **kwargs) == reason


SEED = (
    "Friction opposes the relative motion of surfaces in contact. When a block is pushed across a table, the "
    "net force on it is the applied force minus the friction force, and Newton's second law gives its "
    "acceleration as that net force divided by its mass."
)


@pytest.mark.parametrize(
    ("problem", "threshold", "reason"),
    [
        pytest.param(BLOCK_PROBLEM, 0.9, None, id="new-problem-inspired-by-the-seed"),
        pytest.param(
            "When a block is pushed across a table, the net force on it is the applied force minus the friction force.",
            0.9,
            "copied_seed",
            id="verbatim-sentence-of-the-seed",
        ),
        pytest.param(
            "WHEN a block is pushed across a table, the net force on it is the applied force minus the FRICTION "
            "force! Find it.",
            0.9,
            "copied_seed",
            id="near-copy-with-case-and-punctuation-changes",
        ),
        pytest.param(
            "When a block is pushed across a table, the net force on it is the applied force minus the FRICTION "
            "force! Find it.",
            1.0,
            None,
            id="near-copy-under-a-stricter-threshold",
        ),
    ],
)
def test_validate_qa_flags_problems_that_copy_their_seed(problem, threshold, reason):
    assert validate_qa(problem, LONG_SOLUTION, SEED, copy_threshold=threshold) == reason


def test_check_qa_marks_unparsable_output_and_passes_finish_reason_on():
    assert check_qa("The molar mass of NaCl is 58.44 g/mol.") == QACheck(None, None, "unparsable")
    raw = f"[Problem]\n{BLOCK_PROBLEM}\n[Solution]\n{LONG_SOLUTION}"
    assert check_qa(raw).accepted
    assert check_qa(raw, finish_reason="length").reject_reason == "truncated_solution"
    truncated = check_qa(f"[Problem]\n{KINEMATICS_PROBLEM}\n\n[Solution]\n{TRUNCATED_SOLUTION}")
    assert (truncated.problem, truncated.reject_reason) == (KINEMATICS_PROBLEM, "truncated_solution")


def test_every_reason_validation_can_return_is_documented():
    reasons = {
        validate_qa("", "x"),
        validate_qa("x", ""),
        validate_qa(BLOCK_PROBLEM, "cut"),
        validate_qa(BLOCK_PROBLEM, "Short."),
        validate_qa(SEED, LONG_SOLUTION, SEED),
        validate_qa(BLOCK_PROBLEM, LONG_SOLUTION, instructions=LONG_SOLUTION),
        check_qa("").reject_reason,
    }
    assert reasons == set(REJECT_REASONS)


def test_a_pair_that_restates_the_prompts_guidelines_is_rejected():
    """What a 135M model writes under the Appendix B prompt: its own guidelines, given back as the pair."""
    from hf_cpt.generation.prompts import PROMPTS

    guidelines = PROMPTS["scientific_qa"].text
    echo = (
        "[Problem]: This should be **completely self-contained**, providing all the contextual information one "
        "needs to understand and solve the problem.\n\n[Solution]: Present a comprehensive, step-by-step solution "
        "that solves the problem **correctly** and educates the student, around 250-350 words long. Clearly "
        "articulate the reasoning and methods used at each step, providing insight into the problem-solving process."
    )
    assert check_qa(echo, instructions=guidelines).reject_reason == "echoed_prompt"
    assert check_qa(echo).accepted  # without the prompt to compare with, it looks like a pair
    raw = f"[Problem]\n{BLOCK_PROBLEM}\n[Solution]\n{LONG_SOLUTION}"
    assert check_qa(raw, instructions=guidelines).accepted  # a real pair shares a few words, not the wording
    # One guideline sentence pasted into a real pair is an echo too, though most of the pair is new.
    pasted = (
        f"[Problem]\n{BLOCK_PROBLEM} This should be **completely self-contained**, providing all the contextual "
        f"information.\n[Solution]\n{LONG_SOLUTION}"
    )
    assert check_qa(pasted, instructions=guidelines).reject_reason == "echoed_prompt"


def test_accept_rates_tallies_totals_rates_and_reasons_per_discipline():
    records = [
        {"discipline": "physics", "reject_reason": None},
        {"discipline": "physics", "reject_reason": "too_short"},
        {"discipline": "physics", "reject_reason": None},
        {"discipline": "physics", "reject_reason": "too_short"},
        {"discipline": "biology", "reject_reason": "copied_seed"},
        {"discipline": "biology", "reject_reason": "unparsable"},
    ]
    rates = accept_rates(records)
    assert rates == {
        "biology": {"total": 2, "accepted": 0, "rate": 0.0, "rejected": {"copied_seed": 1, "unparsable": 1}},
        "physics": {"total": 4, "accepted": 2, "rate": 0.5, "rejected": {"too_short": 2}},
    }
    assert json.loads(json.dumps(rates)) == rates


def test_accept_rates_reads_other_field_names_and_rejects_records_without_them():
    records = [{"subject": "code", "reason": None}]
    assert accept_rates(records, discipline_key="subject", reason_key="reason")["code"]["rate"] == 1.0
    with pytest.raises(ValueError, match="'discipline'"):
        accept_rates(records)

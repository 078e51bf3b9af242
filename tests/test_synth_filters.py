"""Exact and near-duplicate removal (`hf_cpt.synth.dedup`), benchmark decontamination
(`hf_cpt.synth.decontamination`) and both on a dataset (`hf_cpt.synth.filters`).

Texts are drawn from a seeded vocabulary of made-up words, so unrelated texts share no shingles and every overlap
a test relies on is one it planted.
"""

from __future__ import annotations

import json
import string
from collections import Counter

import numpy as np
import pytest
from datasets import Dataset, Value

from hf_cpt.synth.decontamination import Decontaminator
from hf_cpt.synth.dedup import (
    MERSENNE_PRIME,
    MinHasher,
    _mod_p,
    _mulmod_unreduced,
    exact_duplicates,
    lsh_params,
    near_duplicates,
    shingle_hashes,
)
from hf_cpt.synth.filters import filter_dataset
from hf_cpt.utils.text import normalize, tokenize


def make_vocabulary(size: int = 4000, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    letters = np.array(list(string.ascii_lowercase))
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(letters, size=rng.integers(4, 9))))
    return sorted(words)


VOCABULARY = make_vocabulary()


def words(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [VOCABULARY[i] for i in rng.integers(0, len(VOCABULARY), size=count)]


def text(count: int, seed: int) -> str:
    return " ".join(words(count, seed))


def jaccard(first: str, second: str, ngram: int = 5) -> float:
    a, b = set(shingle_hashes(first, ngram).tolist()), set(shingle_hashes(second, ngram).tolist())
    return len(a & b) / len(a | b)


def edit(source: str, positions: list[int], seed: int) -> str:
    """`source` with the words at `positions` replaced by words of another draw."""
    tokens = source.split()
    for position, word in zip(positions, words(len(positions), seed), strict=True):
        tokens[position] = word
    return " ".join(tokens)


# --- normalization ----------------------------------------------------------------------------------------------


def test_normalize_folds_case_width_punctuation_and_spacing() -> None:
    assert normalize("  Hello,   WORLD!\tIt's ﬁne—really… ") == "hello world it s fine really"
    assert normalize("ＡＢＣ　１２３") == "abc 123"  # full-width forms fold to ASCII (NFKC)
    assert normalize("co\u00adoperate zero\u200bwidth") == "cooperate zerowidth"  # format characters vanish


def test_tokenize_splits_cjk_into_characters_and_keeps_latin_words_whole() -> None:
    assert tokenize("下列哪个是Python的关键字？") == ["下", "列", "哪", "个", "是", "python", "的", "关", "键", "字"]
    assert tokenize("ひらがなとカタカナ") == list("ひらがなとカタカナ")


# --- exact duplicates -------------------------------------------------------------------------------------------


def test_exact_duplicates_ignore_case_punctuation_and_spacing_and_keep_the_first() -> None:
    texts = [
        "What is the derivative of x squared?",
        "The derivative of x squared is 2x.",
        "WHAT is the derivative of   x squared",
        "what is the derivative, of x squared?!",
        "What is the derivative of x cubed?",
    ]
    assert exact_duplicates(texts).tolist() == [False, False, True, True, False]


# --- near duplicates --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus() -> dict:
    """60 unrelated 200-word texts, plus planted copies of texts 3 and 10 with 3 and 4 words changed."""
    texts = [text(200, seed) for seed in range(60)]
    three_changed = edit(texts[3], [20, 90, 160], seed=1000)
    four_changed = edit(texts[10], [15, 60, 110, 170], seed=1001)
    texts.insert(25, three_changed)  # row 25
    texts.append(four_changed)  # row 61
    return {"texts": texts, "planted": {25: 3, 61: 10}}


def test_planted_near_duplicates_are_dropped_and_mapped_to_their_originals(corpus: dict) -> None:
    texts, planted = corpus["texts"], corpus["planted"]
    assert all(0.8 <= jaccard(texts[row], texts[original]) < 0.9 for row, original in planted.items())
    drop, representative = near_duplicates(texts, threshold=0.8)
    assert np.flatnonzero(drop).tolist() == sorted(planted)
    assert {row: int(representative[row]) for row in planted} == planted
    assert (representative[~drop] == -1).all()


def test_text_at_half_jaccard_is_kept() -> None:
    original = text(200, seed=1)
    half = " ".join(original.split()[:135] + words(65, seed=2))
    assert 0.45 < jaccard(original, half) < 0.55
    drop, representative = near_duplicates([original, half, text(200, seed=3)], threshold=0.8)
    assert not drop.any()
    assert (representative == -1).all()


def test_lsh_candidates_below_the_threshold_are_rejected_by_verification() -> None:
    # At Jaccard 0.7, 21 bands of 6 rows make a pair a candidate with probability 0.93: the exact check keeps them.
    texts = []
    for seed in range(10):
        original = text(200, seed=10 + seed)
        texts += [original, " ".join(original.split()[:165] + words(35, seed=50 + seed))]
    assert all(0.65 < jaccard(texts[i], texts[i + 1]) < 0.75 for i in range(0, len(texts), 2))
    drop, _ = near_duplicates(texts, threshold=0.8)
    assert not drop.any()


def test_unverified_banding_drops_a_one_word_edit_and_keeps_unrelated_texts() -> None:
    texts = [text(200, seed) for seed in range(30)]
    texts.append(edit(texts[7], [100], seed=99))
    drop, representative = near_duplicates(texts, threshold=0.8, verify=False)
    assert np.flatnonzero(drop).tolist() == [30]
    assert representative[30] == 7


def test_clusters_are_transitive_and_keep_the_lowest_index() -> None:
    base = text(200, seed=5)
    drift_one = edit(base, [50, 120], seed=6)
    drift_two = edit(drift_one, [80, 160], seed=7)
    assert jaccard(base, drift_one) >= 0.9 and jaccard(drift_one, drift_two) >= 0.9 > jaccard(base, drift_two)
    drop, representative = near_duplicates([drift_two, text(200, seed=8), base, drift_one], threshold=0.9)
    assert drop.tolist() == [False, False, True, True]
    assert representative.tolist() == [-1, -1, 0, 0]


def test_empty_texts_are_never_near_duplicates() -> None:
    drop, representative = near_duplicates(["", "  ...  ", text(50, seed=1)])
    assert not drop.any()
    assert (representative == -1).all()


def test_near_duplicates_are_deterministic(corpus: dict) -> None:
    first = near_duplicates(corpus["texts"], seed=3)
    second = near_duplicates(corpus["texts"], seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    signatures = MinHasher(seed=3).signatures(corpus["texts"][:5])
    assert not np.array_equal(signatures, MinHasher(seed=4).signatures(corpus["texts"][:5]))


# --- MinHash ----------------------------------------------------------------------------------------------------


def test_shingles_hash_the_same_wherever_they_stand() -> None:
    inner = shingle_hashes("alpha beta gamma delta epsilon zeta", ngram=5)
    outer = shingle_hashes("one two three Alpha, beta; gamma delta epsilon zeta four", ngram=5)
    assert len(inner) == 2 and set(inner.tolist()) <= set(outer.tolist())


def test_signatures_equal_big_integer_universal_hashing() -> None:
    hasher = MinHasher(num_perm=64, ngram=3, seed=11)
    sample = [text(40, seed=1), "Short one", "", text(3, seed=2)]
    signatures = hasher.signatures(sample)
    for row, sample_text in enumerate(sample):
        shingles = [value % MERSENNE_PRIME for value in shingle_hashes(sample_text, ngram=3).tolist()]
        expected = [
            min(((a * x + b) % MERSENNE_PRIME for x in shingles), default=MERSENNE_PRIME)
            for a, b in zip(hasher.a, hasher.b, strict=True)
        ]
        assert signatures[row].tolist() == expected


def test_modular_arithmetic_is_exact_at_the_edges() -> None:
    # The private helpers are where uint64 overflow would hide; random shingle hashes almost never reach the edges.
    p = MERSENNE_PRIME
    edges = [0, 1, p - 1, p, p + 1, 2 * p, 1 << 61, (1 << 62) + 5, (1 << 64) - 1]
    assert _mod_p(np.array(edges, dtype=np.uint64)).tolist() == [value % p for value in edges]
    factors = [0, 1, p - 1, (1 << 32) - 1, 1 << 32, 0xDEADBEEFCAFEBABE % p]
    x = np.array(factors, dtype=np.uint64)
    for a in factors:
        assert _mod_p(_mulmod_unreduced(x, a) + np.uint64(p - 1)).tolist() == [(a * v + p - 1) % p for v in factors]


def test_signature_agreement_estimates_jaccard() -> None:
    vocabulary = [f"token{i}" for i in range(400)]
    first, second = " ".join(vocabulary[:300]), " ".join(vocabulary[100:])  # 200 shared of 400: Jaccard 0.5
    estimates = []
    for seed in range(20):
        signatures = MinHasher(num_perm=256, ngram=1, seed=seed).signatures([first, second])
        estimates.append(float(np.mean(signatures[0] == signatures[1])))
    assert abs(estimates[0] - 0.5) <= 0.1
    assert abs(np.mean(estimates) - 0.5) <= 0.03  # unbiased: 20 seeds average out (standard error 0.007)


def test_lsh_params_reach_the_recall_target_when_verifying_and_balance_errors_otherwise() -> None:
    bands, rows = lsh_params(0.8, 128, verified=True)
    assert bands * rows <= 128
    assert 1 - (1 - 0.8**rows) ** bands >= 0.99
    assert 1 - (1 - 0.8 ** (rows + 1)) ** (128 // (rows + 1)) < 0.99  # the fewest candidates that reach it
    assert lsh_params(0.8, 128, verified=False) == (9, 13)  # datasketch's choice for the same inputs


# --- decontamination --------------------------------------------------------------------------------------------


QUESTION_WORDS = 40


@pytest.fixture(scope="module")
def benchmark() -> list[str]:
    return [text(QUESTION_WORDS, seed) for seed in range(500, 520)]


def qa(question: str, seed: int) -> str:
    """A synthetic QA text of about 300 words with `question` embedded in the middle."""
    return f"Problem: {text(120, seed)} {question}\n\nSolution: {text(140, seed + 1)}."


def test_planted_benchmark_question_is_caught_and_reported(benchmark: list[str]) -> None:
    decontaminator = Decontaminator(benchmark)
    question = benchmark[7].capitalize() + "?"
    matches = decontaminator.matches([qa(question, seed=1), qa("", seed=3)])
    assert matches[0] is not None
    assert (matches[0].index, matches[0].ratio) == (7, 1.0)
    assert matches[1] is None
    snippet = decontaminator.contaminated([qa(question, seed=1)])[0]
    assert len(snippet) == 200 and snippet.endswith("…") and benchmark[7].startswith(snippet[:-1])


def test_lightly_edited_benchmark_question_is_caught(benchmark: list[str]) -> None:
    edited = edit(benchmark[2], [5, 18, 31], seed=77)
    (match,) = Decontaminator(benchmark).matches([qa(edited, seed=5)])
    assert match is not None and match.index == 2


def test_near_miss_sharing_one_ten_gram_is_kept(benchmark: list[str]) -> None:
    phrase = " ".join(benchmark[4].split()[12:22])  # one 10-gram of the question, nothing else
    near_miss = qa(f"{text(15, seed=40)} {phrase} {text(15, seed=41)}", seed=7)
    assert Decontaminator(benchmark).matches([near_miss]) == [None]
    # The shared 10-gram does make it a candidate: it is the difflib confirmation that keeps it.
    (weak,) = Decontaminator(benchmark, diff_ratio_threshold=0.1).matches([near_miss])
    assert weak is not None and weak.index == 4 and weak.ratio < 0.5


def test_shared_words_out_of_order_do_not_confirm_a_match(benchmark: list[str]) -> None:
    question = benchmark[4].split()
    scrambled = question[:12][::-1] + question[12:22] + question[22:][::-1]  # same words, one 10-gram in order
    (match,) = Decontaminator(benchmark, diff_ratio_threshold=0.5).matches([qa(" ".join(scrambled), seed=8)])
    assert match is None


def test_text_sharing_only_a_nine_gram_is_kept(benchmark: list[str]) -> None:
    phrase = " ".join(benchmark[4].split()[12:21])
    assert Decontaminator(benchmark, diff_ratio_threshold=0.01).matches([qa(phrase, seed=9)]) == [None]


def test_chinese_benchmark_question_planted_in_chinese_text_is_caught() -> None:
    question = "下列关于光合作用的说法中，哪一项是正确的？请说明叶绿体在光反应阶段的作用。"
    rng = np.random.default_rng(0)
    filler = ["".join(chr(code) for code in rng.integers(0x4E00, 0x9FA5, size=150)) for _ in range(3)]
    decontaminator = Decontaminator(["Which gas do plants absorb during photosynthesis?", question])
    document = f"问题：{filler[0]}{question}\n解答：{filler[1]}"
    assert decontaminator.contaminated([document, filler[2]]) == [question, None]


def test_benchmark_text_shorter_than_the_ngram_matches_only_whole() -> None:
    decontaminator = Decontaminator(["What is the boiling point of water?"])
    caught = f"{text(50, seed=1)} what is the BOILING point of water {text(50, seed=2)}"
    partial = f"{text(50, seed=1)} what is the boiling point {text(50, seed=2)}"
    assert decontaminator.contaminated([caught, partial]) == ["What is the boiling point of water?", None]


# --- filter_dataset ---------------------------------------------------------------------------------------------


def test_filter_dataset_reports_what_it_drops_and_keeps_rows_in_order(benchmark: list[str]) -> None:
    texts = [text(200, seed) for seed in range(100, 112)]
    texts[3] = texts[1].upper()  # exact duplicate of row 1
    texts[6] = edit(texts[2], [40, 120], seed=300)  # near duplicate of row 2
    texts[8] = qa(benchmark[0], seed=301)  # contaminated
    texts[9] = texts[8]  # contaminated, and an exact duplicate of a contaminated row
    dataset = Dataset.from_dict({"id": list(range(len(texts))), "text": texts, "topic": ["math"] * len(texts)})

    kept, report, dropped = filter_dataset(dataset, benchmark_texts=benchmark)

    assert kept.column_names == dataset.column_names
    assert kept["id"] == [0, 1, 2, 4, 5, 7, 10, 11]
    assert dropped["id"] == [3, 6, 8, 9]
    assert dropped["drop_reason"] == ["exact_duplicate", "near_duplicate", "contaminated", "contaminated"]
    assert dropped["drop_match"] == [1, 2, 0, 0]
    assert report.kept == len(kept)
    assert (
        report.dropped
        == dict(Counter(dropped["drop_reason"]))
        == {
            "contaminated": 2,
            "exact_duplicate": 1,
            "near_duplicate": 1,
        }
    )
    assert {"index": 8, "reason": "contaminated", "matched": benchmark[0][:199] + "…"} in report.examples
    assert {"index": 3, "reason": "exact_duplicate", "matched": 1} in report.examples
    json.dumps(report.to_dict())


def test_filter_dataset_switches(benchmark: list[str]) -> None:
    texts = [text(200, 1), text(200, 1), edit(text(200, 1), [100], seed=2), qa(benchmark[1], seed=3)]
    dataset = Dataset.from_dict({"text": texts})
    kept, nothing, none_dropped = filter_dataset(dataset, dedup=False)
    assert kept["text"] == texts and sum(nothing.dropped.values()) == 0
    assert none_dropped.features == dataset.features | {"drop_reason": Value("string"), "drop_match": Value("int64")}
    _, exact_only, _ = filter_dataset(dataset, near_dedup_threshold=None)
    assert exact_only.dropped == {"contaminated": 0, "exact_duplicate": 1, "near_duplicate": 0}
    _, everything, _ = filter_dataset(dataset, benchmark_texts=benchmark)
    assert everything.dropped == {"contaminated": 1, "exact_duplicate": 1, "near_duplicate": 1}


def test_filter_dataset_names_a_missing_column_and_lists_the_columns() -> None:
    dataset = Dataset.from_dict({"problem": ["a"], "solution": ["b"]})
    with pytest.raises(ValueError, match=r"text_column 'text' .*'problem', 'solution'"):
        filter_dataset(dataset)


def test_filter_dataset_rejects_null_texts_with_the_row() -> None:
    dataset = Dataset.from_dict({"text": ["fine", None]})
    with pytest.raises(ValueError, match="first: row 1"):
        filter_dataset(dataset)

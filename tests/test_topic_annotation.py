"""Topic annotation by an LLM: answers mapped onto the taxonomy, prompts shuffled per document, soft labels from
log-probabilities, resumable records, against a scripted backend and a tiny transformers model."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence

import pytest
from conftest import make_model, make_tokenizer
from datasets import Dataset

from hf_cpt.generation import Completion, GenerationBackend, Messages, SamplingParams, TransformersBackend
from hf_cpt.topics.annotate import FAILED, REPORT_FILE, annotate_topics, normalize_label, topic_probabilities
from hf_cpt.topics.taxonomy import CHINESE, ENGLISH, OTHERS

NORMALIZATION_TABLE = [
    # (raw answer, taxonomy, expected label, expected how)
    ("Law and Policy", ENGLISH, "Law and Policy", "exact"),
    ("  Medicine and Health\n", ENGLISH, "Medicine and Health", "exact"),
    ("law and policy", ENGLISH, "Law and Policy", "folded"),
    ("Economics and Business.", ENGLISH, "Economics and Business", "folded"),
    ('"Biology and Chemistry"', ENGLISH, "Biology and Chemistry", "folded"),
    ("**History & Geography**", ENGLISH, "History and Geography", "folded"),
    ("Topic: Medicine and Health", ENGLISH, "Medicine and Health", "folded"),
    ("Answer: philosophy and logic.", ENGLISH, "Philosophy and Logic", "folded"),
    (
        "The most related topic is Law and Policy because it discusses a court ruling.",
        ENGLISH,
        "Law and Policy",
        "folded",
    ),  # fmt: skip
    ("Law and Policy, though it also touches Economics and Business", ENGLISH, "Law and Policy", "folded"),
    ("Mathematic and Physic", ENGLISH, "Mathematics and Physics", "fuzzy"),
    ("Computer Sciense and Enginering", ENGLISH, "Computer Science and Engineering", "fuzzy"),
    ("Philosophy and Logic", CHINESE, "Philosophy", "fuzzy"),
    ("Psychology", ENGLISH, "Psychology and Sociology", "fuzzy"),
    ("Arts and Culture", ENGLISH, OTHERS, "others"),
    ("Security and International Relations", CHINESE, OTHERS, "others"),
    ("法律与政策", ENGLISH, OTHERS, "others"),
    ("这篇文章属于 Law and Policy。", ENGLISH, "Law and Policy", "folded"),
    ("asdf qwerty 123", ENGLISH, OTHERS, "others"),
    ("", ENGLISH, OTHERS, "others"),
    (None, ENGLISH, OTHERS, "others"),
    ("Others", ENGLISH, OTHERS, "exact"),
]


def siblings(taxonomy) -> list:
    return [CHINESE] if taxonomy is ENGLISH else [ENGLISH]


@pytest.mark.parametrize(("answer", "taxonomy", "label", "how"), NORMALIZATION_TABLE)
def test_normalize_label_maps_raw_answers_onto_the_taxonomy(answer, taxonomy, label, how):
    assert normalize_label(answer, taxonomy, other_taxonomies=siblings(taxonomy)) == (label, how)


def test_normalize_label_without_sibling_taxonomies_still_finds_topics_named_inside():
    assert normalize_label("Philosophy and Logic", CHINESE) == ("Philosophy", "folded")
    assert normalize_label("Psychology", ENGLISH) == (OTHERS, "others")


def test_topic_probabilities_share_ambiguous_tokens_and_ignore_chatter():
    candidates = {"Law": math.log(0.5), "M": math.log(0.2), "**": math.log(0.2), "The": math.log(0.1)}
    probs = topic_probabilities(candidates, ENGLISH)
    assert len(probs) == len(ENGLISH)
    assert sum(probs) == pytest.approx(1.0)
    assert probs[ENGLISH.index("Law and Policy")] == pytest.approx(0.5 / 0.7)
    assert probs[ENGLISH.index("Mathematics and Physics")] == pytest.approx(0.1 / 0.7)
    assert probs[ENGLISH.index("Medicine and Health")] == pytest.approx(0.1 / 0.7)
    assert topic_probabilities({"**": 0.0}, ENGLISH) == []
    assert topic_probabilities(None, ENGLISH) == []


# --------------------------------------------------------------------------------------------------
# a scripted backend
# --------------------------------------------------------------------------------------------------

# Document marker -> (the answer, the topic the answer means).
SCRIPT = {
    "court": ("Law and Policy", "Law and Policy"),
    "symptoms": ("The most related topic is Medicine and Health, since it describes symptoms.", "Medicine and Health"),
    "markets": ("**Economics and Business**", "Economics and Business"),
    "cooking": ("Others", OTHERS),
    "outage": ("Law and Policy", "Law and Policy"),
}
DOCUMENTS = [
    "A court ruling on contracts.",
    "Patients report symptoms of flu.",
    "Stock markets fell sharply today.",
    "The server outage lasted hours.",
    "A recipe for cooking rice.",
    "   ",
    "A court ruling on contracts.",
]


def article_of(messages: Messages) -> str:
    return re.search(r"\[Article\]: (.*)\n\nPlease", messages[0]["content"], re.S).group(1)


def topic_order(messages: Messages) -> list[str]:
    return re.search(r"\[Topics\]: (.*)\n", messages[0]["content"]).group(1).split("; ")


class ScriptedBackend(GenerationBackend):
    """Answers from SCRIPT by a marker word of the article, fails articles containing a `failing` word, and reports
    first-token log-probabilities with 70% on the scripted topic's first word."""

    name = "scripted"

    def __init__(self, failing: Sequence[str] = ()) -> None:
        self.model_name = "scripted-model"
        self.failing = set(failing)
        self.received: list[Messages] = []

    def _completions(self, conversations, params):
        for index, messages in enumerate(conversations):
            self.received.append(messages)
            article = article_of(messages)
            (marker,) = [word for word in SCRIPT if word in article]
            if marker in self.failing:
                completion = Completion(None, None, error="HTTP 500 after 5 tries: overloaded", attempts=5)
            else:
                answer, topic = SCRIPT[marker]
                first = topic.split()[0]
                decoy = "Psychology" if first != "Psychology" else "History"
                logprobs = {first: math.log(0.7), decoy: math.log(0.2), "**": math.log(0.1)}
                completion = Completion(answer, "stop", top_logprobs=[logprobs, {"and": 0.0}])
            yield index, completion


def documents() -> Dataset:
    return Dataset.from_dict({"text": DOCUMENTS, "id": list(range(len(DOCUMENTS)))})


def test_annotation_adds_labels_matches_and_probabilities(tmp_path):
    backend = ScriptedBackend(failing=["outage"])
    labelled = annotate_topics(documents(), backend, "en", tmp_path, chunk_size=2, show_progress=False)

    assert labelled.column_names == ["text", "id", "topic", "topic_raw", "topic_match", "topic_probs"]
    assert labelled["id"] == list(range(len(DOCUMENTS)))
    assert labelled["topic"] == ["Law and Policy", "Medicine and Health", "Economics and Business", OTHERS, OTHERS,
                                 OTHERS, "Law and Policy"]  # fmt: skip
    assert labelled["topic_match"] == ["exact", "folded", "folded", FAILED, "exact", "others", "exact"]
    assert labelled["topic_raw"][1] == SCRIPT["symptoms"][0]
    assert labelled["topic_raw"][3] is None and labelled["topic_raw"][5] is None
    # The duplicate document and the empty one are not asked for.
    assert len(backend.received) == 5

    for row in labelled:
        if row["topic_match"] in (FAILED, "others"):
            assert row["topic_probs"] == []
        else:
            assert len(row["topic_probs"]) == len(ENGLISH)
            assert sum(row["topic_probs"]) == pytest.approx(1.0)
            assert ENGLISH.topics[max(range(len(ENGLISH)), key=row["topic_probs"].__getitem__)] == row["topic"]

    report = json.loads((tmp_path / REPORT_FILE).read_text())
    assert report["documents"] == 7 and report["requests"] == 5 and report["failed"] == 1
    assert report["labels"]["Law and Policy"] == 2 and report["labels"][OTHERS] == 2
    assert report["matches"] == {"exact": 3, "folded": 2, "fuzzy": 0, "others": 1, "failed": 1}
    assert report["mapped_to_others"] == 1


def test_default_sampling_is_greedy_short_and_asks_for_logprobs(tmp_path):
    seen: list[SamplingParams] = []

    class Recording(ScriptedBackend):
        def generate(self, conversations, params, **kwargs):
            seen.append(params)
            return super().generate(conversations, params, **kwargs)

    annotate_topics(documents(), Recording(), "en", tmp_path, show_progress=False)
    assert (seen[0].temperature, seen[0].max_new_tokens, seen[0].top_logprobs) == (0.0, 16, 20)


def test_prompts_shuffle_topics_per_document_deterministically_and_cut_the_article(tmp_path):
    long = Dataset.from_dict({"text": DOCUMENTS[:5] + ["court " * 1000]})
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        backend = ScriptedBackend()
        annotate_topics(long, backend, "cn", tmp_path / name, seed=seed, max_chars=100, show_progress=False)
        runs[name] = {article_of(messages): topic_order(messages) for messages in backend.received}

    for order in runs["a"].values():
        assert sorted(order) == sorted(CHINESE.topics)
    assert len({tuple(order) for order in runs["a"].values()}) > 1  # differs between documents
    assert runs["a"] == runs["b"]  # same seed, same orders
    assert runs["a"] != runs["c"]
    assert max(len(article) for article in runs["a"]) == 100


def test_rerun_asks_only_for_failed_requests(tmp_path):
    first = ScriptedBackend(failing=["outage"])
    annotate_topics(documents(), first, "en", tmp_path, show_progress=False)

    second = ScriptedBackend()
    labelled = annotate_topics(documents(), second, "en", tmp_path, show_progress=False)
    assert [article_of(messages) for messages in second.received] == ["The server outage lasted hours."]
    assert labelled["topic"][3] == "Law and Policy" and labelled["topic_match"][3] == "exact"
    assert json.loads((tmp_path / REPORT_FILE).read_text())["failed"] == 0

    third = ScriptedBackend()
    again = annotate_topics(documents(), third, "en", tmp_path, show_progress=False)
    assert third.received == []
    assert again["topic"] == labelled["topic"] and again["topic_probs"] == labelled["topic_probs"]


def test_annotation_with_another_seed_or_taxonomy_asks_again(tmp_path):
    annotate_topics(documents(), ScriptedBackend(), "en", tmp_path, show_progress=False)
    for taxonomy, seed in (("en", 1), ("cn", 0)):
        backend = ScriptedBackend()
        annotate_topics(documents(), backend, taxonomy, tmp_path, seed=seed, show_progress=False)
        assert len(backend.received) == 5


def test_transformers_backend_labels_every_row_with_a_topic(tmp_path):
    tokenizer = make_tokenizer(tmp_path / "tokenizer")
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['content'] }} {% endfor %}{% if add_generation_prompt %}g1w0{% endif %}"
    )
    backend = TransformersBackend(make_model(len(tokenizer)), tokenizer, batch_size=2, bf16=False)
    corpus = Dataset.from_dict({"text": ["g0w1 g0w2 g0w3", "g2w5 g2w6", "g3w1 g3w9 g3w4 g3w2"]})
    labelled = annotate_topics(corpus, backend, "cn", tmp_path / "out", show_progress=False)
    assert all(topic in CHINESE.topics for topic in labelled["topic"])
    assert all(isinstance(raw, str) for raw in labelled["topic_raw"])
    assert set(labelled["topic_match"]) <= {"exact", "folded", "fuzzy", "others"}


def test_missing_text_column_is_named(tmp_path):
    with pytest.raises(ValueError, match="Column 'body' is not in the dataset"):
        annotate_topics(documents(), ScriptedBackend(), "en", tmp_path, text_column="body")


def test_unknown_taxonomy_is_refused(tmp_path):
    with pytest.raises(ValueError, match="Taxonomy 'klingon' is unknown"):
        annotate_topics(documents(), ScriptedBackend(), "klingon", tmp_path)


def test_existing_topic_column_is_refused(tmp_path):
    labelled = documents().add_column("topic", ["x"] * len(DOCUMENTS))
    with pytest.raises(ValueError, match="already has a column 'topic'"):
        annotate_topics(labelled, ScriptedBackend(), "en", tmp_path)

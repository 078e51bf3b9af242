"""Topic labels for web documents from an LLM, with the paper's zero-shot prompt (§3.2.1, Appendix B).

The paper has GPT-4 label a small set of web pages with one topic of Table 3 each, and trains small
classifiers on those labels. `annotate_topics` produces such a training set through any
`GenerationBackend` (a local transformers model, vLLM, or an OpenAI-compatible server):

- **Prompt.** The Appendix B prompt, word for word, with the taxonomy's topics listed in an order
  shuffled per document (seeded by `seed` and the document), because LLMs favour options by their
  position in a list; a fixed order would bias every label the same way. The article is cut to
  `max_chars` characters: the topic shows in the opening, and long pages only cost tokens.
- **Answer.** Models do not always answer with a bare topic name: they add quotes, bold, a
  "Topic:" label, a full stop, an explanation, a misspelling, or a topic of the other language's
  taxonomy. `normalize_label` maps every answer onto the taxonomy, or onto `Others`, and says how.
- **Probabilities.** Where the backend reports log-probabilities, `topic_probabilities` turns the
  first generated token's candidates into a distribution over the topics (soft labels, and a
  confidence to filter on).
- **Resumability.** Every document's request has a key hashing what determines its answer, and its
  outcome is appended to `records/` as soon as it arrives (`hf_cpt.generation.run_requests`). A restarted
  run asks only for documents without a finished record. A failed request (the backend gave up after
  its retries) is recorded as failed, asked again by the next run, and meanwhile reported in the
  returned dataset with topic `Others` and match `failed`, so that it can be told apart from a real
  `Others` and dropped before training.

Output folder:
    records/rank<r>-<time>-<pid>.jsonl   every request's outcome, one JSON line each
    annotation_report.json               counts per label and per match kind, failures, provenance
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

from datasets import Dataset, List, Value

from hf_cpt.generation.base import Completion, GenerationBackend, Messages, SamplingParams
from hf_cpt.generation.prompts import TOPIC_LABELING
from hf_cpt.generation.runner import run_requests
from hf_cpt.topics.taxonomy import OTHERS, TAXONOMIES, Taxonomy, load_taxonomy
from hf_cpt.utils.distributed import rank_and_world
from hf_cpt.utils.io import write_text_atomically
from hf_cpt.utils.records import FAILED, RecordLog
from hf_cpt.utils.text import tokenize

logger = logging.getLogger(__name__)

MATCH_KINDS = ("exact", "folded", "fuzzy", "others")
"""How an answer became a label: see `normalize_label`. The dataset adds `failed` (`FAILED`) for failed requests."""
OUTPUT_COLUMNS = ("topic", "topic_raw", "topic_match", "topic_probs")
REPORT_FILE = "annotation_report.json"
FUZZY_RATIO = 0.85
"""difflib ratio from which a folded answer counts as a misspelling of a topic name."""

# Words that label an answer ("Topic: Law and Policy") rather than belong to it.
_LABEL_WORDS = frozenset({"topic", "answer", "label", "category"})
_PROMPT = TOPIC_LABELING


def _fold(text: str) -> tuple[str, ...]:
    """The words of `text` that matching compares: NFKC, casefolded, punctuation and symbols gone, `&` read as "and".

    The same folding that exact deduplication uses (`hf_cpt.utils.text.tokenize`), so quotes, bold
    markers, trailing full stops and odd spacing never decide a match; CJK characters become one word each.
    """
    return tuple(tokenize(re.sub("&", " and ", text)))


def _find(words: tuple[str, ...], name: tuple[str, ...]) -> int | None:
    """Where the word sequence `name` first occurs in `words` as whole words, or None."""
    width = len(name)
    return next((start for start in range(len(words) - width + 1) if words[start : start + width] == name), None)


def _first_mentioned(words: tuple[str, ...], names: Mapping[str, tuple[str, ...]]) -> str | None:
    """The topic named earliest in `words`, the longest name when several start at the same word."""
    found = [(start, -len(name), topic) for topic, name in names.items() if (start := _find(words, name)) is not None]
    return min(found)[2] if found else None


def normalize_label(
    answer: str | None, taxonomy: Taxonomy, *, other_taxonomies: Sequence[Taxonomy] = ()
) -> tuple[str, str]:
    """The topic of `taxonomy` an LLM's answer names, and how it was found: (label, how).

    Tried in order, the first that applies wins:

    - `exact`: the answer, stripped of surrounding whitespace, is a topic name.
    - `folded`: after folding (case, punctuation, quotes, markdown bold, `&`, spacing) and dropping a
      leading "Topic:" / "Answer:" label, the answer is a topic name.
    - `fuzzy`, from another taxonomy: the folded answer is a topic of one of `other_taxonomies` (a model
      answering "Philosophy and Logic" under the Chinese taxonomy). It maps to the topic of this taxonomy
      named inside it ("Philosophy"), else to the one topic whose name contains it ("Psychology" under
      the English taxonomy gives "Psychology and Sociology"), else to `Others`: a neighbouring label is
      never left to the fuzzy spelling match, which could pick an unrelated topic.
    - `folded`, mentioned: the answer contains a topic name as whole words ("The most related topic is
      Law and Policy because ..."). With several, the first mentioned wins (the longest when two start
      at the same word): models state their choice first and explain after, naming runners-up.
    - `fuzzy`, misspelt: the folded answer has a difflib ratio of at least `FUZZY_RATIO` with a folded
      topic name ("Mathematic and Physic").
    - `others`: nothing matched (garbage, an empty answer, an answer in another language that names no
      topic): the label is `Others`.
    """
    answer = (answer or "").strip()
    if answer in taxonomy.topics:
        return answer, "exact"
    words = _fold(answer)
    while len(words) > 1 and words[0] in _LABEL_WORDS:
        words = words[1:]
    names = {topic: _fold(topic) for topic in taxonomy.topics}
    same = next((topic for topic, name in names.items() if name == words), None)
    if same is not None:
        return same, "folded"
    siblings = {_fold(topic) for other in other_taxonomies for topic in other.topics}
    if words and words in siblings:
        inside = _first_mentioned(words, names)
        containing = [topic for topic, name in names.items() if _find(name, words) is not None]
        if inside is not None:
            return inside, "fuzzy"
        if len(containing) == 1:
            return containing[0], "fuzzy"
        return OTHERS, "others"
    mentioned = _first_mentioned(words, names)
    if mentioned is not None:
        return mentioned, "folded"
    if words:
        joined = " ".join(words)
        ratio, topic = max((SequenceMatcher(None, joined, " ".join(n)).ratio(), topic) for topic, n in names.items())
        if ratio >= FUZZY_RATIO:
            return topic, "fuzzy"
    return OTHERS, "others"


def topic_probabilities(candidates: Mapping[str, float] | None, taxonomy: Taxonomy) -> list[float]:
    """A distribution over the topics (taxonomy order) from the first generated token's top log-probabilities.

    An approximation: the model's probability of a topic is that of the token sequence spelling it, but
    only the first token's alternatives are known. Each candidate token (folded) is read as the start
    of every topic whose folded name begins with it ("Law" -> Law and Policy; "M" -> both Mathematics
    and Physics and Medicine and Health, sharing its probability equally); candidates that start no
    topic (whitespace, "**", "The") are ignored, and the sums are renormalized over the topics. Topics
    sharing a first token cannot be told apart, and an answer that opens with chatter says little.
    Empty when no candidate starts a topic or the backend reported none.
    """
    if not candidates:
        return []
    names = [" ".join(_fold(topic)) for topic in taxonomy.topics]
    mass = [0.0] * len(names)
    for token, logprob in candidates.items():
        prefix = " ".join(_fold(token))
        starts = [index for index, name in enumerate(names) if prefix and name.startswith(prefix)]
        for index in starts:
            mass[index] += math.exp(logprob) / len(starts)
    total = sum(mass)
    return [value / total for value in mass] if total > 0 else []


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


@dataclass(frozen=True)
class _Request:
    """One document's labeling request: its key, the conversation sent and its sampling."""

    key: str
    messages: Messages
    sampling: SamplingParams


def _hash(value: Any) -> str:
    return hashlib.blake2b(json.dumps(value, sort_keys=True, ensure_ascii=False).encode(), digest_size=16).hexdigest()


def _request(
    article: str, taxonomy: Taxonomy, backend: GenerationBackend, sampling: SamplingParams, seed: int
) -> _Request:
    """The request for one (already cut) article: key over what determines the answer, topics shuffled by document."""
    document = _hash(article)
    topics = list(taxonomy.topics)
    # Seeded by document and run seed only, so another model or sampling sees the same order for a document.
    random.Random(f"{seed}:{document}").shuffle(topics)
    identity = [document, taxonomy.name, list(taxonomy.topics), _PROMPT.fingerprint, backend.model_name]
    key = _hash([*identity, sampling.to_dict(), seed])
    return _Request(key, topic_labeling_messages(article, topics), sampling)


def _record(key: str, completion: Completion, backend: GenerationBackend, taxonomy: Taxonomy) -> dict[str, Any]:
    """What a finished request leaves on disk: the raw answer, not the label, so labels follow `normalize_label`."""
    return {
        "key": key,
        "status": "done" if completion.ok else FAILED,
        "raw": completion.text,
        "first_logprobs": completion.top_logprobs[0] if completion.ok and completion.top_logprobs else None,
        "finish_reason": completion.finish_reason,
        "error": completion.error,
        "attempts": completion.attempts,
        "model": backend.model_name,
        "backend": backend.name,
        "taxonomy": taxonomy.name,
        "prompt_fingerprint": _PROMPT.fingerprint,
    }


def annotate_topics(
    dataset: Dataset,
    backend: GenerationBackend,
    taxonomy: str | os.PathLike[str] | Taxonomy = "en",
    output_dir: str | os.PathLike[str] = "topic-annotation",
    *,
    text_column: str = "text",
    max_chars: int = 2000,
    seed: int = 0,
    sampling: SamplingParams | None = None,
    chunk_size: int = 64,
    show_progress: bool = True,
) -> Dataset:
    """Label every document of `dataset` with one topic of `taxonomy` by asking `backend` (resumable).

    Args:
        dataset: the documents; its rows and columns are kept, in order.
        backend: any `GenerationBackend` (`load_backend("transformers" | "vllm" | "openai", model, ...)`).
        taxonomy: `en`, `cn`, a YAML file or a `Taxonomy` (see `load_taxonomy`).
        output_dir: holds `records/` and `annotation_report.json`; a run pointed at a folder with records
            continues it, asking only for documents without a finished answer.
        text_column: the column with the documents' text.
        max_chars: characters of each document shown to the model.
        seed: shuffles each document's topic list.
        sampling: default greedy decoding of up to 16 tokens with the 20 most likely tokens per position
            (backends or servers that expose none give empty `topic_probs`).
        chunk_size: documents handed to the backend at once (a progress unit; answers are recorded one by one).
        show_progress: progress bars on the main process.

    Returns:
        `dataset` with `topic` (a topic of the taxonomy; `Others` for a failed request), `topic_raw` (the
        model's answer, None when the request failed or the document is empty), `topic_match` (how the answer
        was matched, see `normalize_label`, or `failed`), and `topic_probs` (see `topic_probabilities`).
        Empty documents are not sent: they get `Others`, matched `others`.

    Example:
        >>> backend = load_backend("openai", "gpt-4o", base_url="https://api.openai.com/v1")
        >>> labelled = annotate_topics(load_dataset("json", data_files="pages.jsonl", split="train"), backend,
        ...                            "en", "annotation-en")
        >>> labelled.filter(lambda row: row["topic_match"] != "failed")
    """
    taxonomy = load_taxonomy(taxonomy)
    if text_column not in dataset.column_names:
        raise ValueError(
            f"Column {text_column!r} is not in the dataset (columns: {dataset.column_names}); set text_column to the "
            "column with the documents."
        )
    taken = [column for column in OUTPUT_COLUMNS if column in dataset.column_names]
    if taken:
        raise ValueError(
            f"The dataset already has a column {taken[0]!r}; rename or remove it before annotating, which adds it."
        )
    if max_chars < 1:
        raise ValueError(f"max_chars is {max_chars}; set it to 1 or more characters.")
    sampling = sampling or SamplingParams(max_new_tokens=16, temperature=0.0, top_p=1.0, seed=seed, top_logprobs=20)
    articles = [str(text or "").strip()[:max_chars] for text in dataset[text_column]]
    keys: list[str | None] = []
    requests: dict[str, _Request] = {}  # identical documents share one request
    for article in articles:
        if not article:
            keys.append(None)
            continue
        request = _request(article, taxonomy, backend, sampling, seed)
        requests.setdefault(request.key, request)
        keys.append(request.key)

    records = run_requests(
        backend,
        list(requests.values()),
        RecordLog(Path(output_dir) / "records"),
        lambda request, completion: _record(request.key, completion, backend, taxonomy),
        chunk_size=chunk_size,
        show_progress=show_progress,
        what="Topic annotation",
    )
    labels, raws, matches, probabilities = _labels(keys, records, taxonomy)
    if rank_and_world()[0] == 0:
        report = _report(taxonomy, backend, sampling, len(requests), labels, matches)
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        write_text_atomically(Path(output_dir) / REPORT_FILE, json.dumps(report, indent=2, ensure_ascii=False))
    dataset = dataset.add_column("topic", labels, feature=Value("string"))
    dataset = dataset.add_column("topic_raw", raws, feature=Value("string"))
    dataset = dataset.add_column("topic_match", matches, feature=Value("string"))
    return dataset.add_column("topic_probs", probabilities, feature=List(Value("float64")))


def _labels(
    keys: Sequence[str | None], records: Mapping[str, Mapping[str, Any]], taxonomy: Taxonomy
) -> tuple[list[str], list[str | None], list[str], list[list[float]]]:
    """Per row: its topic, the model's raw answer, how the answer was matched, and the topic probabilities.

    A row whose request failed (or has no record yet) gets `Others` matched `failed`; an empty document (key
    None, never sent) gets `Others` matched `others`.
    """
    siblings = [other for other in TAXONOMIES.values() if other.name != taxonomy.name]
    labels, raws, matches, probabilities = [], [], [], []
    for key in keys:
        record = records.get(key) if key is not None else None
        if key is not None and (record is None or record["status"] == FAILED):
            label, raw, match, probs = OTHERS, None, FAILED, []
        elif record is None:
            label, raw, match, probs = OTHERS, None, "others", []
        else:
            raw = record["raw"]
            label, match = normalize_label(raw, taxonomy, other_taxonomies=siblings)
            probs = topic_probabilities(record["first_logprobs"], taxonomy)
        labels.append(label)
        raws.append(raw)
        matches.append(match)
        probabilities.append(probs)
    return labels, raws, matches, probabilities


def _report(
    taxonomy: Taxonomy,
    backend: GenerationBackend,
    sampling: SamplingParams,
    requests: int,
    labels: Sequence[str],
    matches: Sequence[str],
) -> dict[str, Any]:
    """Counts over the rows; `labels` counts answered rows only, so failed requests do not inflate `Others`."""
    answered = Counter(label for label, match in zip(labels, matches, strict=True) if match != FAILED)
    per_match = Counter(matches)
    return {
        "taxonomy": taxonomy.name,
        "model": backend.model_name,
        "backend": backend.name,
        "prompt_version": _PROMPT.version,
        "prompt_fingerprint": _PROMPT.fingerprint,
        "sampling": sampling.to_dict(),
        "documents": len(labels),
        "requests": requests,
        "labels": {topic: answered[topic] for topic in taxonomy.topics},
        "matches": {kind: per_match[kind] for kind in (*MATCH_KINDS, FAILED)},
        "failed": per_match[FAILED],
        "mapped_to_others": per_match["others"],
    }

"""Topic taxonomies: the paper's English (11) and Chinese (13) topics of Table 3, and taxonomies of your own.

The topics are aligned with the subjects of MMLU and CMMLU, so that per-topic perplexity tracks the
knowledge those benchmarks test (§3.2.1). A taxonomy is data: a name, a language and an ordered tuple
of topic names whose positions are the class ids of a classifier.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from hf_cpt.data.packing import TOPIC_SEPARATOR

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

OTHERS = "Others"


@dataclass(frozen=True)
class Taxonomy:
    """An ordered set of topic names; position i is class id i."""

    name: str
    language: str
    topics: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.topics:
            raise ValueError(f"Taxonomy {self.name!r} has an empty label set; list at least one topic.")
        duplicates = sorted({topic for topic in self.topics if self.topics.count(topic) > 1})
        if duplicates:
            raise ValueError(f"Taxonomy {self.name!r} lists {duplicates[0]!r} twice; name every topic once.")
        for topic in self.topics:
            _check_topic_name(topic, f"taxonomy {self.name!r}")

    def index(self, topic: str) -> int:
        """The class id of a topic; a topic outside the taxonomy is an error naming the taxonomy."""
        try:
            return self.topics.index(topic)
        except ValueError:
            raise ValueError(
                f"{topic!r} is not a topic of taxonomy {self.name!r}; use one of {list(self.topics)}."
            ) from None

    def __len__(self) -> int:
        return len(self.topics)


def _check_topic_name(topic: str, where: str) -> None:
    if TOPIC_SEPARATOR in topic:
        raise ValueError(
            f"Topic {topic!r} of {where} contains {TOPIC_SEPARATOR!r}, which separates a source from its topic in "
            f"group names; rename it (e.g. {topic.replace(TOPIC_SEPARATOR, ' and ')!r})."
        )


def check_topic_values(
    values: Iterable[str],
    source: str,
    taxonomy: Taxonomy | str | os.PathLike[str] | None = None,
    *,
    unknown_to_others: bool = False,
    column: str = "topic",
) -> dict[str, str]:
    """Check the topic labels of a source against its taxonomy; return the topic each distinct value counts as.

    A value outside the taxonomy (`Law and Polcy`) would become a group of its own, with no validation documents
    and no word; so it is an error listing every such value, or, with `unknown_to_others`, counted as `Others`.
    A `/` in a value is refused whatever the taxonomy: it would split the group name.

    Args:
        values: the distinct (or all) topic values of the source's documents.
        source: the source, e.g. `web-en`; its taxonomy is `SOURCE_TAXONOMIES[source]` unless `taxonomy` is given.
        taxonomy: the taxonomy to check against; a source without one is checked for `/` only.
        unknown_to_others: map values outside the taxonomy to `Others` (with a warning) instead of refusing them.
        column: the topic column, for the messages.
    """
    distinct = sorted({str(value) for value in values})
    for value in distinct:
        _check_topic_name(value, f"source {source!r} (column {column!r})")
    if taxonomy is None and source not in SOURCE_TAXONOMIES:
        return {value: value for value in distinct}
    taxonomy = load_taxonomy(taxonomy if taxonomy is not None else SOURCE_TAXONOMIES[source])
    unknown = [value for value in distinct if value not in taxonomy.topics]
    if unknown and not unknown_to_others:
        raise ValueError(
            f"Source {source!r} has {len(unknown)} {column!r} value(s) outside taxonomy {taxonomy.name!r}: "
            f"{unknown[:10]}; relabel them as topics of {list(taxonomy.topics)}, or map them to {OTHERS!r} "
            "with unknown_to_others."
        )
    if unknown:
        if OTHERS not in taxonomy.topics:
            raise ValueError(
                f"Taxonomy {taxonomy.name!r} has no {OTHERS!r} topic to map the values {unknown[:10]} of source "
                f"{source!r} to; relabel them, or add {OTHERS!r} to the taxonomy."
            )
        logger.warning("Source %s: topic values %s are outside taxonomy %s; counted as %s.", source, unknown[:10],
                       taxonomy.name, OTHERS)  # fmt: skip
    return {value: OTHERS if value in unknown else value for value in distinct}


ENGLISH = Taxonomy(
    "en",
    "en",
    (
        "Mathematics and Physics",
        "Computer Science and Engineering",
        "Biology and Chemistry",
        "History and Geography",
        "Law and Policy",
        "Philosophy and Logic",
        "Economics and Business",
        "Psychology and Sociology",
        "Security and International Relations",
        "Medicine and Health",
        OTHERS,
    ),
)
CHINESE = Taxonomy(
    "cn",
    "zh",
    (
        "Biology and Chemistry",
        "Computer Science and Engineering",
        "Economics and Business",
        "History and Geography",
        "Law and Policy",
        "Mathematics and Physics",
        "Medicine and Health",
        "Philosophy",
        "Arts and Culture",
        "Project and Practical Management",
        "Psychology",
        "Sociology and Education",
        OTHERS,
    ),
)
TAXONOMIES = {taxonomy.name: taxonomy for taxonomy in (ENGLISH, CHINESE)}
# The corpus source whose documents each built-in taxonomy labels.
SOURCE_TAXONOMIES = {"web-en": "en", "web-cn": "cn"}


def load_taxonomy(name_or_path: str | os.PathLike[str] | Taxonomy) -> Taxonomy:
    """A built-in taxonomy by name (`en`, `cn`) or one from a YAML file with `name`, `language` and `topics`."""
    if isinstance(name_or_path, Taxonomy):
        return name_or_path
    if str(name_or_path) in TAXONOMIES:
        return TAXONOMIES[str(name_or_path)]
    path = Path(name_or_path)
    if not path.is_file():
        raise ValueError(
            f"Taxonomy {str(name_or_path)!r} is unknown; use one of {list(TAXONOMIES)} or a YAML file "
            "with name, language and topics."
        )
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    topics = data.get("topics")
    if not isinstance(topics, list) or not all(isinstance(topic, str) and topic.strip() for topic in topics):
        raise ValueError(f"{path} has no list of topic names under 'topics'; list the topics as strings.")
    return Taxonomy(str(data.get("name", path.stem)), str(data.get("language", "en")), tuple(topics))


def check_corpus_topics(
    group_names: Iterable[str],
    taxonomies: Mapping[str, Taxonomy | str | os.PathLike[str]] | None = None,
    *,
    unknown_to_others: bool = False,
) -> dict[str, str]:
    """Refuse a corpus whose topic groups (`source/topic`) hold values outside their source's taxonomy.

    A topic column written by hand (`Law and Polcy`) would otherwise train as a topic of its own, with no
    validation documents for the mixture to measure. `taxonomies` (source -> taxonomy) add to or replace
    `SOURCE_TAXONOMIES`; sources with no taxonomy in either are not checked.

    Returns:
        the group each group counts as: itself, or with `unknown_to_others` (the recipe's `unknown_topics:
        others`) `source/Others` for a topic outside the taxonomy (with a warning); `Corpus.regrouped` applies it.
    """
    taxonomies = {**SOURCE_TAXONOMIES, **(taxonomies or {})}
    groups = {group: group for group in group_names}
    by_source: dict[str, list[str]] = {}
    for group in groups:
        source, separator, topic = group.partition(TOPIC_SEPARATOR)
        if separator and source in taxonomies:
            by_source.setdefault(source, []).append(topic)
    for source, topics in by_source.items():
        taxonomy = load_taxonomy(taxonomies[source])
        unknown = sorted(set(topics) - set(taxonomy.topics))
        if unknown and not unknown_to_others:
            raise ValueError(
                f"Source {source!r} has topic values outside taxonomy {taxonomy.name!r}: {unknown[:10]}; relabel "
                f"those documents as topics of {list(taxonomy.topics)}, set topic_classifier to label the source "
                f"with the taxonomy, or set unknown_topics: others to count them as {OTHERS!r}."
            )
        for topic, counted in check_topic_values(topics, source, taxonomy, unknown_to_others=True).items():
            groups[f"{source}{TOPIC_SEPARATOR}{topic}"] = f"{source}{TOPIC_SEPARATOR}{counted}"
    return groups

"""Topic taxonomies: the paper's English (11) and Chinese (13) topics of Table 3, and taxonomies of your own.

The topics are aligned with the subjects of MMLU and CMMLU, so that per-topic perplexity tracks the
knowledge those benchmarks test (§3.2.1). A taxonomy is data: a name, a language and an ordered tuple
of topic names whose positions are the class ids of a classifier.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

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

"""The stage mixtures of Llama-3-SynE (§3.1-§3.3), in tokens, by source of the released corpus.

Per-source shares inside each language come from the authors' released data scripts; the language
ratios from the paper: stage 1 Chinese : English = 2 : 8, stage 2 Chinese : English : synthetic = 1 : 7 : 2.
"""

from __future__ import annotations

from collections.abc import Mapping

CHINESE_SOURCE_SHARES = {"web-cn": 0.70, "encyclopedia-cn": 0.05, "book-cn": 0.20, "qa_forum-cn": 0.05}
ENGLISH_SOURCE_SHARES = {
    "web-en": 0.40,
    "encyclopedia-en": 0.05,
    "book-en": 0.15,
    "qa_forum-en": 0.05,
    "paper-en": 0.10,
    "math-en": 0.10,
    "code-en": 0.15,
}
SYNTHETIC_SOURCE_SHARES = {"synthesis-en": 1.0}

MIXTURES: dict[str, dict[str, dict]] = {
    # Bilingual adaptation: topic mixture and PPL curriculum act inside web-cn / web-en.
    "llama3_syne_stage1": {
        "chinese": {"weight": 2, "sources": CHINESE_SOURCE_SHARES},
        "english": {"weight": 8, "sources": ENGLISH_SOURCE_SHARES},
    },
    # Synthetic enhancement: random sampling following these proportions.
    "llama3_syne_stage2": {
        "chinese": {"weight": 1, "sources": CHINESE_SOURCE_SHARES},
        "english": {"weight": 7, "sources": ENGLISH_SOURCE_SHARES},
        "synthetic": {"weight": 2, "sources": SYNTHETIC_SOURCE_SHARES},
    },
}

TOPIC_SOURCES = ("web-cn", "web-en")


def resolve_mixture(mixture: str | Mapping, field: str = "mixture") -> Mapping:
    """A mixture given by preset name (see `MIXTURES`) or spelled out as a mapping."""
    if isinstance(mixture, str):
        if mixture not in MIXTURES:
            raise ValueError(f"{field} {mixture!r} is not a known preset; use one of {sorted(MIXTURES)} or a mapping.")
        return MIXTURES[mixture]
    return mixture

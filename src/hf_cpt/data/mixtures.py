"""Stage mixtures, in tokens, by source: the presets of Llama-3-SynE (§3.1-§3.3) and how a mixture spec
becomes one share per source.

Per-source shares inside each language come from the authors' released data scripts; the language
ratios from the paper: stage 1 Chinese : English = 2 : 8, stage 2 Chinese : English : synthetic = 1 : 7 : 2.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

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


def normalize_ratios(ratios: Mapping[str, float], field: str = "ratios") -> dict[str, float]:
    """Shares that sum to 1; a negative share or an all-zero mixture is a configuration error."""
    for name, value in ratios.items():
        if value is None or not np.isfinite(value) or value < 0:
            raise ValueError(f"{field}.{name} is {value}; set every ratio to a number >= 0.")
    total = float(sum(ratios.values()))
    if total <= 0:
        raise ValueError(f"{field} are all zero; give at least one source a positive ratio.")
    return {name: value / total for name, value in ratios.items() if value > 0}


def flatten_mixture(mixture: Mapping, field: str = "mixture") -> dict[str, float]:
    """Source shares of a stage from either form the configs use.

    Flat: `{source: ratio}`. Nested by language, as the paper states it (Chinese : English = 2 : 8,
    then per-source shares inside each language):
    `{language: {"weight": 2, "sources": {source: share}}}`.
    """
    flat: dict[str, float] = {}
    for name, value in mixture.items():
        if isinstance(value, Mapping):
            if "weight" not in value or "sources" not in value:
                raise ValueError(f"{field}.{name} needs a 'weight' and a 'sources' mapping; add both.")
            weight = value["weight"]
            if weight is None or not np.isfinite(weight) or weight < 0:
                raise ValueError(f"{field}.{name}.weight is {weight}; set it to a number >= 0.")
            shares = normalize_ratios(value["sources"], f"{field}.{name}.sources")
            for source, share in shares.items():
                flat[source] = flat.get(source, 0.0) + weight * share
        else:
            flat[name] = value
    return normalize_ratios(flat, field)

"""`filter_dataset`: decontamination, then exact and near deduplication of a `datasets.Dataset`, with what was
dropped and why."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
from datasets import Dataset, Value

from hf_cpt.synth.decontamination import Decontaminator
from hf_cpt.synth.dedup import check_threshold, first_occurrences, near_duplicates

__all__ = ["DROP_REASONS", "FilterReport", "filter_dataset"]

# Every reason `filter_dataset` drops a row for, with what it means.
DROP_REASONS: dict[str, str] = {
    "contaminated": "the text contains a benchmark item (shared n-gram confirmed by a difflib ratio)",
    "exact_duplicate": "the normalized text equals that of an earlier row",
    "near_duplicate": "the shingle Jaccard similarity with an earlier row reaches the threshold",
}
_EXAMPLES_PER_REASON = 3


@dataclass
class FilterReport:
    """What `filter_dataset` kept and dropped, and a few dropped rows per reason to look at."""

    kept: int
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    # Dropped rows: {"index": row in the input, "reason": a DROP_REASONS key, "matched": the index of the kept
    # row it duplicates, or a snippet of the benchmark item it contains}.
    examples: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict, for logs and run reports."""
        return asdict(self)


def filter_dataset(
    dataset: Dataset,
    text_column: str = "text",
    *,
    dedup: bool = True,
    near_dedup_threshold: float | None = 0.8,
    benchmark_texts: Iterable[str] | None = None,
    decontamination_ngram: int = 10,
) -> tuple[Dataset, FilterReport, Dataset]:
    """Drop contaminated, exactly duplicated and near-duplicated rows of `dataset`.

    Returns (kept rows, report, dropped rows). Kept rows keep their order and columns. Dropped rows gain
    `drop_reason` (a `DROP_REASONS` key) and `drop_match` (int): for a duplicate, the index in `dataset` of the
    kept row it duplicates; for a contaminated row, the index of the benchmark item in `benchmark_texts`.

    Order of the steps: decontamination first (when `benchmark_texts` is given), then exact deduplication, then
    near deduplication at `near_dedup_threshold` (None skips it) on what is left, so every duplicate points at a
    row that was actually kept. `dedup=False` skips both deduplication steps.
    """
    if text_column not in dataset.column_names:
        raise ValueError(
            f"text_column {text_column!r} is not a column of the dataset; set it to one of "
            f"{', '.join(map(repr, dataset.column_names))}."
        )
    if near_dedup_threshold is not None:
        check_threshold("near_dedup_threshold", near_dedup_threshold, ", or None to skip near deduplication")
    texts = list(dataset[text_column])
    missing = [index for index, text in enumerate(texts) if not isinstance(text, str)]
    if missing:
        raise ValueError(
            f"text_column {text_column!r} has {len(missing)} rows that are not strings (first: row {missing[0]}); "
            "fill or filter them before filtering."
        )
    reasons: list[str | None] = [None] * len(texts)
    matched: list[int] = [-1] * len(texts)
    snippets: dict[int, str] = {}
    if benchmark_texts is not None:
        decontaminator = Decontaminator(benchmark_texts, ngram=decontamination_ngram)
        for index, match in enumerate(decontaminator.matches(texts)):
            if match is not None:
                reasons[index], matched[index], snippets[index] = "contaminated", match.index, match.snippet
    if dedup:
        steps = [("exact_duplicate", first_occurrences)]
        if near_dedup_threshold is not None:
            steps.append(("near_duplicate", lambda rows: near_duplicates(rows, threshold=near_dedup_threshold)[1]))
        for reason, find in steps:
            remaining = [index for index, current in enumerate(reasons) if current is None]
            originals = find([texts[index] for index in remaining])
            for position in np.flatnonzero(originals >= 0).tolist():
                index = remaining[position]
                reasons[index], matched[index] = reason, remaining[originals[position]]
    kept = [index for index, reason in enumerate(reasons) if reason is None]
    dropped = [index for index, reason in enumerate(reasons) if reason is not None]
    report = FilterReport(kept=len(kept))
    for index in dropped:
        reason = reasons[index]
        report.dropped[reason] += 1
        if report.dropped[reason] <= _EXAMPLES_PER_REASON:
            report.examples.append({"index": index, "reason": reason, "matched": snippets.get(index, matched[index])})
    dropped_rows = (
        dataset.select(dropped)
        .add_column("drop_reason", [reasons[index] for index in dropped], feature=Value("string"))
        .add_column("drop_match", [matched[index] for index in dropped], feature=Value("int64"))
    )
    return dataset.select(kept), report, dropped_rows

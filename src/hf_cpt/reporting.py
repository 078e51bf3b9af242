"""What a run shows a person: per-source and per-topic perplexity, tokens against targets, and plots."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hf_cpt.data.packing import TOPIC_SEPARATOR, source_of
from hf_cpt.utils.io import atomic_path, write_text_atomically

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from hf_cpt.config import CPTConfig
    from hf_cpt.stages import StageResult

PerplexityTable = Mapping[str, Mapping[str, float]]

#: matplotlib's tab10: ten colours far apart. A series takes the next colour first, then the next line style
#: (or hatch), then the next marker, so the number of a series and its style determine each other.
SERIES_COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
LINE_STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<")
BAR_HATCHES = ("", "//", "..", "xx", "\\\\", "++", "oo", "--")


def _marker(number: int) -> str | tuple[int, int, int]:
    """The `number`-th marker: the named ones, then stars with ever more points (6, 7, ...), so never a repeat."""
    if number < len(MARKERS):
        return MARKERS[number]
    return (number - len(MARKERS) + 6, 1, 0)


def _hatch(number: int) -> str:
    """The `number`-th hatch: the plain ones, then denser repetitions of the patterned ones, so never a repeat."""
    if number < len(BAR_HATCHES):
        return BAR_HATCHES[number]
    patterned = BAR_HATCHES[1:]
    return patterned[(number - 1) % len(patterned)] * (1 + (number - 1) // len(patterned))


def line_styles(count: int) -> list[dict[str, Any]]:
    """`Axes.plot` keyword arguments for `count` lines whose (colour, line style, marker) all differ, for any count.

    Colour changes fastest, then line style, then marker: the first 10 lines are solid with circles, the
    next 30 dashed, dash-dotted and dotted, and every 40 lines the marker changes.
    """
    per_marker = len(SERIES_COLOURS) * len(LINE_STYLES)
    return [
        {
            "color": SERIES_COLOURS[index % len(SERIES_COLOURS)],
            "linestyle": LINE_STYLES[index // len(SERIES_COLOURS) % len(LINE_STYLES)],
            "marker": _marker(index // per_marker),
            "markersize": 4,
        }
        for index in range(count)
    ]


def bar_styles(count: int) -> list[dict[str, Any]]:
    """`Axes.bar`/`barh` keyword arguments for `count` bar series whose (colour, hatch) all differ, for any count."""
    return [
        {
            "color": SERIES_COLOURS[index % len(SERIES_COLOURS)],
            "hatch": _hatch(index // len(SERIES_COLOURS)),
            "edgecolor": "white",
            "linewidth": 0,
        }
        for index in range(count)
    ]


def perplexity_by_source(table: PerplexityTable) -> dict[str, float]:
    """Token-weighted perplexity per source from a per-group table with `nll` and `tokens`."""
    nll, tokens = _sum_by_source(table, "nll"), _sum_by_source(table, "tokens")
    return {source: math.exp(nll[source] / tokens[source]) for source in nll}


def perplexity_by_language(table: PerplexityTable) -> dict[str, float]:
    """Token-weighted perplexity per language (the suffix of a source's name: `web-en` -> `en`), so runs that
    measured the same sources compare in one number each for English and Chinese."""
    nll, tokens = _sum_by_source(table, "nll"), _sum_by_source(table, "tokens")
    totals: dict[str, list[float]] = {}
    for source in nll:
        language = totals.setdefault(source.rsplit("-", 1)[-1], [0.0, 0.0])
        language[0] += nll[source]
        language[1] += tokens[source]
    return {language: math.exp(total / count) for language, (total, count) in totals.items()}


def bits_per_byte_by_source(table: PerplexityTable) -> dict[str, float]:
    """Bits per byte per source (total NLL / (ln 2 × bytes)) from a per-group table with `nll` and `bytes`."""
    nll, num_bytes = _sum_by_source(table, "nll"), _sum_by_source(table, "bytes")
    return {source: nll[source] / (math.log(2) * num_bytes[source]) for source in num_bytes if num_bytes[source]}


def _sum_by_source(table: PerplexityTable, key: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for group, entry in table.items():
        if key in entry:
            totals[source_of(group)] = totals.get(source_of(group), 0.0) + entry[key]
    return totals


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def perplexity_section(tables: Mapping[str, PerplexityTable]) -> str:
    """Markdown tables per source and per topic group, one column per evaluation point: perplexity, and bits
    per byte (tokenizer-independent) where the tables have byte counts."""
    labels = list(tables)
    topics = sorted({group for table in tables.values() for group in table if TOPIC_SEPARATOR in group})
    parts = []
    for title, by_source, key in (
        ("Per source", perplexity_by_source, "perplexity"),
        ("Bits per byte, per source", bits_per_byte_by_source, "bits_per_byte"),
    ):
        values = {label: by_source(table) for label, table in tables.items()}
        sources = sorted({source for table in values.values() for source in table})
        if not sources:
            continue
        rows = [[source] + [f"{values[label].get(source, float('nan')):.2f}" for label in labels] for source in sources]
        parts += [f"### {title}", markdown_table(["source", *labels], rows)]
        topic_rows = [[topic] + [_topic_cell(tables[label].get(topic), key) for label in labels] for topic in topics]
        if any(cell != "-" for row in topic_rows for cell in row[1:]):
            topic_title = "Per topic" if key == "perplexity" else "Bits per byte, per topic"
            parts += [f"### {topic_title}", markdown_table(["topic", *labels], topic_rows)]
    return "\n\n".join(parts)


def _topic_cell(entry: Mapping[str, float] | None, key: str) -> str:
    """A topic's perplexity, or its bits per byte from its NLL and bytes; "-" where the table has none."""
    if entry is None:
        return "-"
    if key == "perplexity":
        return f"{entry['perplexity']:.2f}"
    return f"{entry['nll'] / (math.log(2) * entry['bytes']):.2f}" if entry.get("bytes") else "-"


def tokens_section(recipe: Mapping[str, Any]) -> str:
    """Tokens consumed per source against the stage's target, with the deviation in blocks, and block reuse.

    The target is the source's cumulative target over the weight history (`target_blocks`) where the recipe
    has it, else its final ratio times the tokens consumed.
    """
    total = recipe["tokens_consumed"]
    block = recipe["max_length"]
    rows = []
    for source, entry in sorted(recipe["sources"].items()):
        target = entry["target_ratio"] or 0.0
        if not target and not entry["tokens_consumed"]:
            continue  # a source of the corpus this stage does not use
        target_tokens = entry["target_blocks"] * block if "target_blocks" in entry else target * total
        deviation = (entry["tokens_consumed"] - target_tokens) / block
        row = [
            source,
            f"{target:.4f}",
            f"{entry['consumed_ratio']:.4f}",
            f"{round(target_tokens):,}",
            f"{entry['tokens_consumed']:,}",
            f"{deviation:+.2f}",
        ]
        if "available_blocks" in entry:
            row += [f"{entry['available_blocks']:,}", f"{entry['drawn_blocks']:,}", f"{entry['repeated_blocks']:,}"]
        rows.append(row)
    header = ["source", "target ratio", "consumed ratio", "target tokens", "consumed tokens", "deviation (blocks)"]
    if rows and len(rows[0]) > len(header):
        header += ["unused blocks at start", "drawn blocks", "repeated blocks"]
    return markdown_table(header, rows)


def plot_training_loss(histories: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path) -> Figure:
    """Training loss over optimizer steps, stages one after another, with a line at each stage boundary.

    Returns the figure (saved to `path` and closed, still inspectable).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4))
    offset = 0
    for (stage, history), style in zip(histories.items(), line_styles(len(histories)), strict=True):
        points = [(entry["step"] + offset, entry["loss"]) for entry in history if "loss" in entry]
        if points:
            steps, losses = zip(*points, strict=True)
            axis.plot(steps, losses, label=stage, **{**style, "markersize": 3})
        last_step = max((entry.get("step", 0) for entry in history), default=0)
        offset += last_step
        axis.axvline(offset, color="grey", linestyle=":", linewidth=1)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("training loss")
    axis.set_title("Training loss")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return figure


def plot_group_perplexity(tables: Mapping[str, PerplexityTable], path: str | Path) -> Figure:
    """Validation perplexity per topic group (or source), one bar per evaluation point.

    Returns the figure (saved to `path` and closed, still inspectable).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = list(tables)
    groups = sorted({group for table in tables.values() for group in table})
    height = 0.8 / max(1, len(labels))
    figure, axis = plt.subplots(figsize=(9, max(4.0, 0.32 * len(groups) * max(1, len(labels)) / 1.5)))
    positions = np.arange(len(groups))
    for index, (label, style) in enumerate(zip(labels, bar_styles(len(labels)), strict=True)):
        values = [tables[label].get(group, {}).get("perplexity", np.nan) for group in groups]
        axis.barh(positions + index * height, values, height=height, label=label, **style)
    axis.set_yticks(positions + height * (len(labels) - 1) / 2, groups, fontsize=7)
    axis.invert_yaxis()
    axis.set_xscale("log")
    axis.set_xlabel("validation perplexity (log scale)")
    axis.set_title("Validation perplexity per topic / source")
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the bars, never over them
    figure.tight_layout()
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return figure


def mixture_section(rounds: Sequence[Mapping[str, Any]]) -> str:
    """Proportions and validation perplexity of the re-weighted topics per round, as two markdown tables."""
    topics = list(rounds[0]["perplexity"])
    labels = [f"round {entry['round']} (step {entry['step']})" for entry in rounds]
    proportion_rows = [
        [topic] + [f"{entry['proportions'].get(topic, 0.0):.4f}" for entry in rounds] for topic in topics
    ]
    perplexity_rows = [
        [topic] + [f"{entry['perplexity'][topic]:.2f}" if topic in entry["perplexity"] else "-" for entry in rounds]
        for topic in topics
    ]
    return "\n\n".join(
        [
            "Share of all draws from each round's step on (groups not listed keep their share):",
            markdown_table(["topic", *labels], proportion_rows),
            "Validation perplexity at each round's step (round 0: before training):",
            markdown_table(["topic", *labels], perplexity_rows),
        ]
    )


def plot_mixture_history(rounds: Sequence[Mapping[str, Any]], path: str | Path) -> Figure:
    """Proportion and validation perplexity of every re-weighted topic over the rounds, side by side.

    Every topic's line has its own (colour, line style, marker), however many topics there are. Returns the
    figure (saved to `path` and closed, still inspectable).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    topics = list(rounds[0]["perplexity"])  # the topics the rule moves
    steps = [entry["step"] for entry in rounds]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for topic, style in zip(topics, line_styles(len(topics)), strict=True):
        left.plot(steps, [entry["proportions"].get(topic, 0.0) for entry in rounds], **style)
        right.plot(steps, [entry["perplexity"].get(topic, math.nan) for entry in rounds], label=topic, **style)
    left.set_xlabel("optimizer step")
    left.set_ylabel("proportion of draws")
    left.set_title("Topic proportions by round")
    right.set_xlabel("optimizer step")
    right.set_ylabel("validation perplexity")
    right.set_yscale("log")
    right.set_title("Per-topic validation perplexity")
    # Long handles, so that the line style shows in the legend too; a column per 30 topics.
    right.legend(
        loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7, handlelength=4, ncols=math.ceil(len(topics) / 30)
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return figure


def curriculum_section(curriculum: Mapping[str, Any]) -> str:
    """The difficulty group each ordered topic had reached at each logging step, as a markdown table."""
    progress = curriculum["progress"]
    rows = [
        [topic] + [str(entry["groups"].get(topic, "-")) for entry in progress]
        for topic in curriculum["topics"]
        if any(topic in entry["groups"] for entry in progress)
    ]
    header = ["topic", *(f"step {entry['step']}" for entry in progress)]
    return "\n\n".join(
        [
            f"Order `{curriculum['order']}`: difficulty group (0 = lowest perplexity of "
            f"{curriculum['num_difficulty_groups']}) of the last block of each topic trained by each step:",
            markdown_table(header, rows),
        ]
    )


def synthesis_section(report: Mapping[str, Any], sample: Mapping[str, Any] | None) -> str:
    """The synthetic QA a run generated: accept rates per discipline, what was filtered, and one pair."""
    from hf_cpt.synth.card import discipline_table, filter_lines

    rate = report["accepted"] / report["items"] if report["items"] else 0.0
    parts = [
        f"{report['accepted']} of {report['items']} pairs accepted ({rate:.0%}) from `{report['model']}` with the "
        f"prompt `{report['prompt_version']}`; {report['kept']} kept after the filters and mixed into training.",
        discipline_table(report),
        "\n".join(filter_lines(report)),
    ]
    if not report["kept"]:
        reasons = ", ".join(f"{reason} {count}" for reason, count in report.get("failure_reasons", {}).items())
        parts.append(
            "**No generated pair was acceptable, so none was mixed into training**: the synthetic source trains on "
            f"its own documents only{f' (rejected: {reasons})' if reasons else ''}. A larger generating model "
            "(`synthesis.model`) follows the prompt's format far more often."
        )
    if sample is not None:
        parts += [f"A sample pair ({sample['discipline']}):", f"**Problem.** {sample['problem']}"]
        parts.append(f"**Solution.** {sample['solution']}")
    return "\n\n".join(parts)


def classifier_section(classifiers: Mapping[str, Mapping[str, Any]]) -> str:
    """Per web source: what the topic classifier learnt from (the given topics, or an LLM's labels of a sample,
    §3.2.1), its held-out quality, and how its labels compare with the given ones where there are any."""
    rows = []
    for source, entry in classifiers.items():
        agreement = entry.get("agreement", {})
        annotation = entry.get("annotation")
        learnt_from = (
            f"{annotation['model']}'s labels of {annotation['documents'] - annotation['failed']} documents"
            if annotation
            else "the given topics"
        )
        rows.append(
            [
                source,
                entry["taxonomy"],
                learnt_from,
                f"{entry['num_train']} / {entry['num_heldout']}",
                f"{entry['accuracy']:.3f}",
                f"{entry['macro_f1']:.3f}",
                f"{entry['majority_baseline']:.3f}",
                ", ".join(f"{split} {share:.0%}" for split, share in agreement.items()) or "n/a (no given topics)",
            ]
        )
    header = [
        "source", "taxonomy", "learnt from", "train / held out", "accuracy", "macro-F1", "majority baseline",
        "agreement",
    ]  # fmt: skip
    return "\n\n".join(
        [
            "A classifier per web source learnt topics on a stratified split, from the given topics or from an "
            "LLM's labels of a sample (§3.2.1); its predictions are what stage 1 mixes (as the paper labels its web "
            "corpus). Held-out accuracy and macro-F1 (against the labels it learnt from) beside the majority-class "
            "baseline; agreement of the predictions with the given topics, where the source has them:",
            markdown_table(header, rows),
        ]
    )


def write_run_report(
    output_dir: str | Path,
    *,
    model_name: str,
    dataset_path: str,
    config: CPTConfig,
    ppl_tables: Mapping[str, PerplexityTable],
    stages: Sequence[StageResult],
    synthesis: Mapping[str, Any] | None = None,
    benchmarks: Mapping[str, Mapping[str, Any]] | None = None,
    classifiers: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Write a staged run's `report.md` with its plots and `validation_perplexity.json` into `output_dir`.

    Sections: validation perplexity per group before and after each stage, tokens per source against the
    target ratio per stage, then (where the run had them) each stage's topic mixture and curriculum, the topic
    classifiers, the synthetic QA, and the benchmarks before and after; the training loss last.

    Args:
        ppl_tables: run point (`before`, `after <stage>`) -> group -> perplexity entry.
        stages: the stages in order (`hf_cpt.stages.run_stage` returns them).
        synthesis: the synthetic QA report (`synth.generate_for_recipe`), with its `sample` pair.
        benchmarks: `{"before": ..., "after": ...}` evaluation results (`EvaluationResult.to_dict()`).
        classifiers: per source, the classifier's metrics (`topics.relabel_sources`).

    Returns:
        the path of `report.md`.
    """
    # Imported here, so that importing the plots and sections does not load the training stack.
    from hf_cpt.evaluation.reports import forgetting_report
    from hf_cpt.mixture.callback import HISTORY_NAME

    output = Path(output_dir)
    # Every file whole or not at all (`atomic_path`), `report.md` last: a run killed while it writes the report
    # leaves the previous one, and the same command run again writes it anew.
    write_text_atomically(output / "validation_perplexity.json", json.dumps(ppl_tables, indent=2, ensure_ascii=False))
    with atomic_path(output / "training_loss.png") as temporary:
        plot_training_loss({stage.name: stage.log_history for stage in stages}, temporary)
    with atomic_path(output / "validation_perplexity.png") as temporary:
        plot_group_perplexity(ppl_tables, temporary)
    lines = [
        "# Llama-3-SynE continual pre-training report",
        "",
        f"- model: `{model_name}`",
        f"- data: `{dataset_path}`",
        f"- block length: {config.max_length} tokens; peak lr {config.learning_rate}, "
        f"warm-up from {config.warmup_start_lr}; bf16: {config.bf16}",
        "",
        "## Validation perplexity",
        "",
        perplexity_section(ppl_tables),
        "",
        "![validation perplexity](validation_perplexity.png)",
        "",
        "## Tokens consumed per source against the target ratio",
    ]
    for stage in stages:
        recipe = stage.recipe
        lines += [
            "",
            f"### {stage.name} ({recipe['tokens_consumed']:,} tokens, {recipe['global_step']} steps)",
            "",
            tokens_section(recipe),
        ]
    for stage in stages:
        if stage.mixture:
            lines += [
                "",
                f"## Topic mixture: {stage.name}",
                "",
                mixture_section(stage.mixture),
                "",
                f"![topic mixture]({stage.name}/{HISTORY_NAME}.png)",
            ]
        if stage.curriculum:
            lines += ["", f"## Perplexity curriculum: {stage.name}", "", curriculum_section(stage.curriculum)]
    if classifiers:
        lines += ["", "## Topic classifiers (§3.2.1)", "", classifier_section(classifiers)]
    if synthesis is not None:
        lines += ["", "## Synthetic QA (§3.3)", "", synthesis_section(synthesis, synthesis["sample"])]
    if benchmarks:
        table = forgetting_report(benchmarks["before"], benchmarks["after"])
        lines += ["", "## Benchmarks before and after CPT", "", table]
    lines += ["", "## Training loss", "", "![training loss](training_loss.png)", ""]
    path = output / "report.md"
    write_text_atomically(path, "\n".join(lines))
    return path

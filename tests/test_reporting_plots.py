"""Every line (or bar series) of a report plot has its own style, however many there are."""

from __future__ import annotations

from matplotlib.colors import to_hex

from hf_cpt.reporting import bar_styles, line_styles, plot_group_perplexity, plot_mixture_history, plot_training_loss


def line_triples(axis) -> list[tuple[str, str, object]]:
    return [(to_hex(line.get_color()), line.get_linestyle(), line.get_marker()) for line in axis.get_lines()]


def test_a_mixture_plot_of_26_topics_gives_every_line_its_own_colour_style_and_marker(tmp_path):
    topics = [f"web-en/topic {index}" for index in range(26)]
    rounds = [
        {
            "round": number,
            "step": 8 * number,
            "proportions": {topic: 1 / 26 for topic in topics},
            "perplexity": {topic: 20.0 - number + index / 10 for index, topic in enumerate(topics)},
        }
        for number in range(3)
    ]
    figure = plot_mixture_history(rounds, tmp_path / "mixture.png")
    proportions, perplexities = figure.axes
    for axis in (proportions, perplexities):
        triples = line_triples(axis)
        assert len(triples) == 26 == len(set(triples))
    # The same topic looks the same in both panels, and the legend names every topic once.
    assert line_triples(proportions) == line_triples(perplexities)
    assert [text.get_text() for text in perplexities.get_legend().get_texts()] == topics
    # Ten colours first (solid, circles), then the same ten dashed.
    assert {style for _, style, _ in line_triples(perplexities)[:10]} == {"-"}
    assert line_triples(perplexities)[10][1] == "--"
    assert (tmp_path / "mixture.png").stat().st_size > 0


def test_line_styles_never_repeat_for_any_count():
    styles = line_styles(1000)
    triples = {(style["color"], style["linestyle"], style["marker"]) for style in styles}
    assert len(triples) == 1000
    assert line_styles(1000)[:26] == line_styles(26)  # a line's style does not depend on how many others there are


def test_training_loss_of_twelve_stages_gives_each_stage_its_own_line(tmp_path):
    histories = {f"stage{index}": [{"step": step, "loss": 3.0 - step / 10} for step in (1, 2)] for index in range(12)}
    figure = plot_training_loss(histories, tmp_path / "loss.png")
    (axis,) = figure.axes
    triples = [triple for triple in line_triples(axis) if triple[1] != ":"]  # the dotted stage boundaries
    assert len(triples) == 12 == len(set(triples))


def test_perplexity_bars_of_twelve_evaluation_points_differ_in_colour_or_hatch(tmp_path):
    groups = ["book-en", "web-en/Law and Policy"]
    tables = {f"after round {index}": {group: {"perplexity": 10.0 + index} for group in groups} for index in range(12)}
    figure = plot_group_perplexity(tables, tmp_path / "perplexity.png")
    (axis,) = figure.axes
    looks = [(to_hex(bars[0].get_facecolor()), bars[0].get_hatch() or "") for bars in axis.containers]
    assert len(looks) == 12 == len(set(looks))
    assert len({(style["color"], style["hatch"]) for style in bar_styles(500)}) == 500


def test_the_report_says_plainly_when_no_synthetic_pair_was_mixed_in():
    from hf_cpt.reporting import synthesis_section

    report = {
        "accepted": 0, "items": 18, "kept": 0, "model": "m", "prompt_version": "scientific_qa/v1", "failed": 0,
        "kept_per_discipline": {}, "accept_rates": {}, "rejected": {"unparsable": 12, "echoed_prompt": 6},
        "filters": {"dropped": {}}, "failure_reasons": {"unparsable": 12, "echoed_prompt": 6},
    }  # fmt: skip
    text = synthesis_section(report, None)
    assert "No generated pair was acceptable, so none was mixed into training" in text
    assert "(rejected: unparsable 12, echoed_prompt 6)" in text
    assert "No generated pair" not in synthesis_section({**report, "accepted": 1, "kept": 1}, None)

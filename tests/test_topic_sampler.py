"""TopicMixtureSampler: the global order, its proportions, weight changes, exact resume, and bad input."""

import json

import numpy as np
import pytest
from accelerate.data_loader import BatchSamplerShard
from datasets import ClassLabel, Dataset
from torch.utils.data import BatchSampler

from hf_cpt.mixture import TopicMixtureSampler


def topic_ids(sizes: list[int], seed: int = 0) -> np.ndarray:
    """Topic id per document, topics shuffled through the dataset as in a real corpus."""
    ids = np.repeat(np.arange(len(sizes)), sizes)
    return np.random.default_rng(seed).permutation(ids)


def max_window_error(drawn_topics: np.ndarray, weights: np.ndarray, window: int = 1000) -> float:
    """Largest |share in a window - weight| over every window of `window` consecutive draws."""
    counts = np.zeros((len(drawn_topics) + 1, len(weights)))
    counts[1:] = np.cumsum(np.eye(len(weights))[drawn_topics], axis=0)
    return float(np.abs((counts[window:] - counts[:-window]) / window - weights).max())


def test_iteration_yields_the_global_order_and_draw_counts_are_exact():
    topics = topic_ids([300, 500, 200, 50])
    sampler = TopicMixtureSampler(topics, {0: 0.1, 1: 0.2, 2: 0.3, 3: 0.4}, seed=3, num_samples=4000)
    order = sampler.indices(0, 4000)
    assert list(sampler) == order.tolist()
    for position in (0, 1, 17, 999, 2500, 4000):
        expected = np.bincount(topics[order[:position]], minlength=4)
        counted = sampler.draws_per_topic(position)
        assert [counted.get(str(t), 0) for t in range(4)] == expected.tolist(), position


def test_each_pass_of_a_topic_draws_every_document_once_and_passes_are_counted():
    topics = topic_ids([30, 70])
    sampler = TopicMixtureSampler(topics, {0: 0.5, 1: 0.5}, seed=1, num_samples=200)
    order = sampler.indices(0, 200)
    small = order[topics[order] == 0]  # 100 draws of a 30-document topic: 3 full passes and 10 draws
    members = sorted(np.flatnonzero(topics == 0).tolist())
    for start in (0, 30, 60):
        assert sorted(small[start : start + 30].tolist()) == members
    assert len(set(small[90:].tolist())) == 10
    assert not np.array_equal(small[:30], small[30:60])  # each pass has its own permutation
    assert sampler.passes(200) == pytest.approx({"0": 100 / 30, "1": 100 / 70})


def test_pass_permutations_look_random():
    topics = np.zeros(10_000, dtype=np.int64)
    order = TopicMixtureSampler(topics, {0: 1.0}, seed=0).indices(0, 10_000)
    assert sorted(order.tolist()) == list(range(10_000))
    assert abs(np.corrcoef(np.arange(10_000), order)[0, 1]) < 0.05
    assert abs(np.corrcoef(order[:-1], order[1:])[0, 1]) < 0.05


def test_order_is_deterministic_by_seed():
    topics = topic_ids([100, 100, 100])
    weights = {0: 0.2, 1: 0.3, 2: 0.5}
    first = TopicMixtureSampler(topics, weights, seed=7).indices(0, 300)
    assert np.array_equal(first, TopicMixtureSampler(topics, weights, seed=7).indices(0, 300))
    assert not np.array_equal(first, TopicMixtureSampler(topics, weights, seed=8).indices(0, 300))


def test_topics_with_zero_or_no_weight_are_never_drawn():
    topics = topic_ids([50, 50, 50])
    order = TopicMixtureSampler(topics, {0: 1.0, 1: 0.0}, num_samples=500).indices(0, 500)
    assert set(topics[order].tolist()) == {0}


@pytest.mark.parametrize(
    "weights",
    [
        np.array([0.01, 0.09, 0.9]),
        np.random.default_rng(0).dirichlet(np.ones(24)),
        np.random.default_rng(1).dirichlet(np.full(24, 0.3)),
    ],
    ids=["skewed-3", "24-topics", "24-topics-skewed"],
)
def test_every_window_of_1000_draws_is_within_one_point_of_the_weights(weights):
    topics = topic_ids([2000] * len(weights))
    sampler = TopicMixtureSampler(topics, dict(enumerate(weights)), seed=5, num_samples=100_000)
    drawn = topics[sampler.indices(0, 100_000)]
    assert max_window_error(drawn, weights) < 0.01


def test_set_weights_applies_from_the_next_undrawn_position_and_is_kept_in_the_history():
    topics = topic_ids([400, 400, 400])
    before = {0: 0.6, 1: 0.3, 2: 0.1}
    after = {"0": 0.1, "1": 0.1, "2": 0.8}
    unchanged = TopicMixtureSampler(topics, before, seed=2, num_samples=20_000).indices(0, 20_000)
    sampler = TopicMixtureSampler(topics, before, seed=2, num_samples=20_000)
    drawn = []
    for index in sampler:
        drawn.append(index)
        if len(drawn) == 2345:
            sampler.set_weights(after)
    drawn = np.array(drawn)
    assert np.array_equal(drawn[:2345], unchanged[:2345])
    assert [position for position, _ in sampler.history] == [0, 2345]
    assert sampler.history[0][1] == pytest.approx({"0": 0.6, "1": 0.3, "2": 0.1})
    assert sampler.history[1][1] == pytest.approx(after)
    assert max_window_error(topics[drawn[2345:]], np.array([0.1, 0.1, 0.8])) < 0.01
    # A topic continues its pass across the change: no document repeats before the topic runs out.
    topic2 = drawn[topics[drawn] == 2]
    assert len(set(topic2[:400].tolist())) == 400
    # The order is a function of the schedule: a fresh sampler with the same history replays it.
    replay = TopicMixtureSampler(topics, before, seed=2, num_samples=20_000)
    replay.set_weights(after, position=2345)
    assert np.array_equal(replay.indices(0, 20_000), drawn)


def resume_points(sampler: TopicMixtureSampler, topics: np.ndarray) -> dict[str, int]:
    """Positions worth stopping at: mid-pass, right after a weight change, right after a topic wrapped."""
    order = sampler.indices(0, len(sampler))
    smallest = int(np.argmin(np.bincount(topics)))
    second_pass_start = np.flatnonzero(topics[order] == smallest)[np.sum(topics == smallest)]
    return {"mid-pass": 37, "after-set-weights": 500, "after-wrap": int(second_pass_start) + 1}


@pytest.mark.parametrize("where", ["mid-pass", "after-set-weights", "after-wrap"])
def test_state_dict_resumes_with_the_very_same_indices(where):
    topics = topic_ids([60, 25, 140])

    def build() -> TopicMixtureSampler:
        return TopicMixtureSampler(topics, {0: 0.5, 1: 0.3, 2: 0.2}, seed=11, num_samples=3000)

    changes = {500: {0: 0.1, 1: 0.6, 2: 0.3}, 1700: {1: 0.5, 2: 0.5}}  # after this many draws

    def draw(sampler: TopicMixtureSampler, drawn: list[int], stop: int | None = None) -> list[int]:
        for index in sampler:
            drawn.append(index)
            if len(drawn) in changes:
                sampler.set_weights(changes[len(drawn)])
            if len(drawn) == stop:
                break
        return drawn

    reference = build()
    uninterrupted = draw(reference, [])
    stop = resume_points(reference, topics)[where]
    interrupted = build()
    drawn = draw(interrupted, [], stop)
    state = json.loads(json.dumps(interrupted.state_dict()))  # as a checkpoint stores it
    resumed = TopicMixtureSampler(topics, {0: 1.0}, seed=0, num_samples=3000)  # built afresh, then restored
    resumed.load_state_dict(state)
    assert draw(resumed, drawn) == uninterrupted


def test_state_size_does_not_grow_with_the_number_of_documents():
    small = TopicMixtureSampler(topic_ids([10] * 24), dict.fromkeys(range(24), 1.0))
    large = TopicMixtureSampler(topic_ids([10_000] * 24), dict.fromkeys(range(24), 1.0))
    growth = len(json.dumps(large.state_dict())) - len(json.dumps(small.state_dict()))
    assert growth <= 24 * 4  # only the topic sizes grow, by their digits


def test_accelerate_shards_of_the_order_interleave_back_to_the_global_order():
    topics = topic_ids([40, 40, 40])
    sampler = TopicMixtureSampler(topics, {0: 0.5, 1: 0.25, 2: 0.25}, seed=4, num_samples=96)
    shards = [
        list(BatchSamplerShard(BatchSampler(sampler, 4, drop_last=True), num_processes=2, process_index=rank))
        for rank in (0, 1)
    ]
    interleaved = [index for pair in zip(*shards, strict=True) for batch in pair for index in batch]
    assert interleaved == sampler.indices(0, 96).tolist()


def test_epochs_continue_the_stream_and_set_epoch_moves_between_them():
    topics = topic_ids([10, 10])
    sampler = TopicMixtureSampler(topics, {0: 0.5, 1: 0.5}, seed=0, num_samples=8)
    assert list(sampler) == list(sampler) == sampler.indices(0, 8).tolist()  # re-iterating repeats the epoch
    sampler.set_epoch(1)
    assert list(sampler) == sampler.indices(8, 16).tolist()


def test_an_order_handed_in_is_followed_within_the_topic_every_pass():
    topics = topic_ids([6, 50])
    members = np.flatnonzero(topics == 0)
    curriculum = members[::-1]
    sampler = TopicMixtureSampler(topics, {0: 0.5, 1: 0.5}, seed=0, num_samples=40)
    sampler.set_topic_order(0, curriculum)
    order = sampler.indices(0, 40)
    assert order[topics[order] == 0].tolist() == np.concatenate([curriculum] * 4)[:20].tolist()
    restarted = TopicMixtureSampler(topics, {0: 0.5, 1: 0.5}, seed=0, num_samples=40)
    with pytest.raises(ValueError, match="used other per-topic orders than this sampler; install the same orders"):
        restarted.load_state_dict(sampler.state_dict())


def test_a_later_order_applies_from_its_draw_and_keeps_the_draws_before():
    topics = topic_ids([6, 50])
    members = np.flatnonzero(topics == 0)
    first, later = members[::-1], np.roll(members, 2)
    sampler = TopicMixtureSampler(topics, {0: 0.5, 1: 0.5}, seed=0, num_samples=40)
    sampler.set_topic_order(0, first)
    before = sampler.indices(0, 40)
    sampler.set_topic_order(0, later, from_draw=8)  # draw 8 = the third block of the second pass
    after = sampler.indices(0, 40)
    expected = np.concatenate([first, first[:2], later[2:], later, later])[:20]
    assert after[topics[after] == 0].tolist() == expected.tolist()
    assert np.array_equal(after[topics[after] == 1], before[topics[before] == 1])  # other topics untouched
    assert sampler.topic_draws(0, 6, 14).tolist() == [*first[:2], *later[2:], *later[:2]]
    # A resumed sampler needs the same sequence of orders, and then continues with the same indices.
    sampler.seek(17)
    state = json.loads(json.dumps(sampler.state_dict()))
    restarted = TopicMixtureSampler(topics, {0: 0.5, 1: 0.5}, seed=0, num_samples=40)
    restarted.set_topic_order(0, first)
    with pytest.raises(ValueError, match="used other per-topic orders than this sampler"):
        restarted.load_state_dict(state)
    restarted.set_topic_order(0, later, from_draw=8)
    restarted.load_state_dict(state)
    assert list(restarted) == after[17:].tolist()
    # Only a topic with an order of its own can continue with another.
    with pytest.raises(ValueError, match="has no order of its own to continue from; install one with from_draw=0"):
        restarted.set_topic_order(1, np.flatnonzero(topics == 1), from_draw=4)


def test_from_dataset_reads_ids_and_names_from_a_class_label():
    data = Dataset.from_dict({"group": [0, 1, 1, 0]}).cast_column("group", ClassLabel(names=["web-en/A", "book-en"]))
    sampler = TopicMixtureSampler.from_dataset(data, {"web-en/A": 1.0, "book-en": 3.0})
    assert sampler.weights == {"web-en/A": 0.25, "book-en": 0.75}
    assert sampler.num_documents == 4


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({0: 1.0, "web-en/Z": 1.0}, r"weights names topic 'web-en/Z', which is not a topic of this sampler"),
        ({0: -0.5, 1: 1.0}, r"weights\[0\] is -0.5; set every weight to a finite number >= 0"),
        ({0: float("nan"), 1: 1.0}, r"weights\[0\] is nan; set every weight to a finite number >= 0"),
        ({0: 0.0, 1: 0.0}, r"weights are all zero; give at least one topic a positive weight"),
        ({0: 1.0, 2: 1.0}, r"weights\['2'\] is positive but topic '2' has no documents; set its weight to 0"),
    ],
)
def test_bad_weights_fail_with_one_sentence(weights, message):
    topics = np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match=message):
        TopicMixtureSampler(topics, weights, topic_names=["0", "1", "2"])


def test_bad_topics_fail_with_one_sentence():
    with pytest.raises(ValueError, match=r"topics has dtype <U1; give integer topic ids"):
        TopicMixtureSampler(np.array(["a", "b"]), {0: 1.0})
    with pytest.raises(ValueError, match=r"topics holds id 3, outside \[0, 2\); give ids that index topic_names"):
        TopicMixtureSampler(np.array([0, 3]), {0: 1.0}, topic_names=["a", "b"])


def test_a_change_cannot_rewrite_drawn_positions():
    sampler = TopicMixtureSampler(np.array([0, 1] * 10), {0: 0.5, 1: 0.5}, num_samples=20)
    iterator = iter(sampler)
    for _ in range(5):
        next(iterator)
    with pytest.raises(ValueError, match="position 3 is already drawn \\(the sampler is at 5\\)"):
        sampler.set_weights({0: 1.0}, position=3)


# ---- the interleave: exact across weight changes, hierarchical by source ----
def hierarchical_groups(seed: int = 0) -> tuple[list[str], np.ndarray]:
    """26 groups over 6 sources: three with topics (13, 9 and 1) and three packed whole."""
    names = [f"web-en/t{i}" for i in range(13)] + [f"web-cn/t{i}" for i in range(9)]
    names += ["book-en/t0", "code-en", "math-en", "synthesis-en"]
    return names, topic_ids([400] * len(names), seed)


def deviations(sampler: TopicMixtureSampler, topics: np.ndarray, stop: int) -> tuple[float, float]:
    """Largest |draws − cumulative target| over every prefix of [0, stop): per source, and per topic (global)."""
    order = topics[sampler.indices(0, stop)]
    names = sampler.topic_names
    weights = np.zeros((stop, len(names)))
    changes = [*sampler.history, (stop, {})]
    for (start, ratios), (end, _) in zip(changes, changes[1:], strict=False):
        weights[start:end] = [ratios.get(name, 0.0) for name in names]
    topic_error = np.abs(np.cumsum(np.eye(len(names))[order], axis=0) - np.cumsum(weights, axis=0))
    sources = sorted({name.split("/")[0] for name in names})
    owner = np.array([sources.index(name.split("/")[0]) for name in names])
    membership = np.eye(len(sources))[owner]  # topic x source
    source_error = np.abs(np.cumsum(membership[order], axis=0) - np.cumsum(weights @ membership, axis=0))
    return float(source_error.max()), float(topic_error.max())


def paper_like_changes(sampler: TopicMixtureSampler, rng: np.random.Generator, positions: list[int]) -> None:
    """Weight changes as large as the §3.2.1 rule makes (f_i in [1 − α, 1 + α], α up to 0.9), floor 0.005."""
    names = sampler.topic_names
    weights = np.array([sampler.weights.get(name, 0.0) for name in names])
    for position in positions:
        weights = weights * (1 + rng.choice([0.3, 0.5, 0.9]) * rng.uniform(-1, 1, len(names)))
        weights = np.maximum(weights / weights.sum(), 0.005)
        sampler.set_weights(dict(zip(names, weights / weights.sum(), strict=True)), position=position)


@pytest.mark.parametrize("every", [8, 16, 32, 64])
def test_re_setting_unchanged_weights_leaves_the_order_exactly_as_it_was(every):
    names, topics = hierarchical_groups()
    weights = dict(zip(names, np.random.default_rng(3).dirichlet(np.full(len(names), 0.5)), strict=True))
    never = TopicMixtureSampler(topics, weights, seed=1, num_samples=4000, topic_names=names).indices(0, 4000)
    sampler = TopicMixtureSampler(topics, weights, seed=1, num_samples=4000, topic_names=names)
    drawn = []
    for index in sampler:
        drawn.append(index)
        if len(drawn) % every == 0:
            sampler.set_weights(weights)
    assert drawn == never.tolist()
    assert len(sampler.history) == 1 + 4000 // every  # every re-set is recorded, the last at the end of the epoch


def test_a_small_source_is_not_starved_by_frequent_weight_updates():
    """The docs' example regime: a round every 2 steps of 4 blocks. web-cn holds 30% of the mix."""
    names = ["web-cn/a", "web-cn/b", "web-cn/c", "web-en/a", "web-en/b", "book-en"]
    topics = topic_ids([200] * len(names))
    weights = {"web-cn/a": 0.1, "web-cn/b": 0.1, "web-cn/c": 0.1, "web-en/a": 0.3, "web-en/b": 0.2, "book-en": 0.2}
    for every in (8, 16, 64, None):
        sampler = TopicMixtureSampler(topics, weights, seed=0, num_samples=512, topic_names=names)
        drawn = []
        for index in sampler:
            drawn.append(index)
            if every and len(drawn) % every == 0:
                sampler.set_weights(weights)
        chinese = np.isin(topics[drawn], [0, 1, 2]).mean()
        assert abs(chinese - 0.3) < 1 / 512, every


@pytest.mark.parametrize("seed", range(4))
def test_with_constant_weights_every_source_is_within_tijdemans_bound_at_every_prefix(seed):
    names, topics = hierarchical_groups(seed)
    rng = np.random.default_rng(seed)
    weights = np.maximum(rng.dirichlet(np.full(len(names), rng.choice([0.1, 0.5, 2.0]))), 0.005)
    sampler = TopicMixtureSampler(topics, dict(enumerate(weights)), seed=seed, num_samples=5000, topic_names=names)
    source_error, topic_error = deviations(sampler, topics, 5000)
    sources = len(sampler.source_names)
    assert sources == 6
    assert source_error <= 1 - 1 / (2 * sources - 2) + 1e-6  # Tijdeman (1980): 1 − 1/(2n − 2) for n sources
    assert topic_error < 2


@pytest.mark.parametrize("seed", range(6))
def test_after_weight_changes_at_arbitrary_positions_sources_stay_within_one_draw_and_topics_within_two(seed):
    names, topics = hierarchical_groups(seed)
    rng = np.random.default_rng(100 + seed)
    weights = np.maximum(rng.dirichlet(np.full(len(names), 0.5)), 0.005)
    sampler = TopicMixtureSampler(topics, dict(enumerate(weights)), seed=seed, num_samples=3000, topic_names=names)
    positions = sorted(set(rng.integers(1, 3000, int(rng.integers(5, 100))).tolist()))
    paper_like_changes(sampler, rng, positions)
    assert min(min(w for w in ratios.values()) for _, ratios in sampler.history) < 0.006  # weights as small as 0.005
    source_error, topic_error = deviations(sampler, topics, 3000)
    assert source_error <= 1
    assert topic_error <= 2


def test_restarting_the_interleave_at_every_change_would_starve_small_groups():
    """What the carried credit prevents: the same changes, each starting from zero credit (the old phase reset)."""
    names, topics = hierarchical_groups(1)
    rng = np.random.default_rng(7)
    weights = np.maximum(rng.dirichlet(np.full(len(names), 0.5)), 0.005)
    carried = TopicMixtureSampler(topics, dict(enumerate(weights)), seed=0, num_samples=2048, topic_names=names)
    restarted = []
    for start in range(0, 2048, 16):  # a fresh sampler per 16 draws: every change restarts the interleave
        fresh = TopicMixtureSampler(topics, dict(enumerate(weights)), seed=0, num_samples=16, topic_names=names)
        restarted.extend(topics[fresh.indices(0, 16)].tolist())
        carried.set_weights(dict(enumerate(weights)), position=start)
    counts = np.bincount(restarted, minlength=len(names))
    assert np.abs(counts - weights * 2048).max() > 4  # small groups never reach their turn within 16 draws
    assert deviations(carried, topics, 2048)[1] < 2


# ---- excluded documents: what an earlier stage drew is drawn last ----
def test_excluded_documents_are_drawn_only_after_every_other_document_of_their_topic():
    topics = topic_ids([50, 30])
    first = TopicMixtureSampler(topics, {0: 0.5, 1: 0.5}, seed=2, num_samples=40)
    list(first)
    drawn = first.drawn_mask()
    assert drawn.sum() == 40
    second = TopicMixtureSampler(topics, {0: 0.5, 1: 0.5}, seed=2, num_samples=60, exclude=drawn)
    assert second.fresh_documents() == {"0": 50 - drawn[topics == 0].sum(), "1": 30 - drawn[topics == 1].sum()}
    order = second.indices(0, 60)
    for topic in (0, 1):
        ours = order[topics[order] == topic]
        fresh = second.fresh_documents()[str(topic)]
        assert not drawn[ours[:fresh]].any()  # the first pass: only documents stage one did not draw
        assert sorted(ours[:fresh].tolist()) == sorted(np.flatnonzero((topics == topic) & ~drawn).tolist())
        # then a new pass over all of the topic's documents
        assert len(set(ours[fresh : fresh + int((topics == topic).sum())].tolist())) == len(
            ours[fresh:][: (topics == topic).sum()]
        )
    repeated = second.repeated_draws(60)
    for topic in (0, 1):
        count = int((topics[order] == topic).sum())
        assert repeated[str(topic)] == max(0, count - second.fresh_documents()[str(topic)])
    # A resumed sampler must exclude the very same documents.
    state = json.loads(json.dumps(second.state_dict()))
    with pytest.raises(ValueError, match="excluded 40 documents drawn by earlier stages, this sampler 0"):
        TopicMixtureSampler(topics, {0: 1.0}, num_samples=60).load_state_dict(state)
    resumed = TopicMixtureSampler(topics, {0: 1.0}, num_samples=60, exclude=np.flatnonzero(drawn))
    resumed.load_state_dict(state)
    assert resumed.indices(0, 60).tolist() == order.tolist()


def test_a_curriculum_order_skips_excluded_documents_in_its_first_pass():
    topics = topic_ids([10, 10])
    members = np.flatnonzero(topics == 0)
    exclude = members[[1, 4]]
    sampler = TopicMixtureSampler(topics, {0: 1.0}, num_samples=18, exclude=exclude)
    sampler.set_topic_order(0, members[::-1])
    order = sampler.indices(0, 18)
    first = [index for index in members[::-1] if index not in exclude]
    assert order.tolist() == first + members[::-1][:10].tolist()
    assert sampler.topic_pass(0, 3) == (0, 8)
    assert sampler.topic_pass(0, 9) == (8, 18)


def test_bad_exclusions_fail_with_one_sentence():
    with pytest.raises(ValueError, match="exclude is a mask of 3 values for 4 dataset indices"):
        TopicMixtureSampler(np.array([0, 0, 1, 1]), {0: 1.0}, exclude=np.array([True, False, True]))
    with pytest.raises(ValueError, match=r"exclude holds values outside \[0, 4\)"):
        TopicMixtureSampler(np.array([0, 0, 1, 1]), {0: 1.0}, exclude=[7])

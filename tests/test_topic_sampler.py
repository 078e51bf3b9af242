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

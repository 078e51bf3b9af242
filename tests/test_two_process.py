"""Two processes (gloo): ranks share one global order, re-weight and re-order it identically, and together
train on each block of it once."""

import json
from collections import Counter
from pathlib import Path

from conftest import run_two_processes

WORKER = Path(__file__).parent / "workers" / "two_process_train.py"


def test_two_ranks_share_the_mixture_and_consume_every_planned_block_exactly_once(tmp_path):
    run_two_processes(WORKER, str(tmp_path))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["planned"] == ranks[1]["planned"]  # one global order, built identically on each rank
    planned = ranks[0]["planned"]
    assert len(planned) == 2 * 2 * 6
    # Each rank trained on its own share, and together they covered the planned order once.
    assert len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == len(planned) // 2
    assert Counter(ranks[0]["seen"]) + Counter(ranks[1]["seen"]) == Counter(planned)
    # Rank r's k-th batch of 2 is the global order's batch 2k + r (accelerate's sharding, nothing dropped).
    for rank in (0, 1):
        expected = [index for k in range(6) for index in planned[(2 * k + rank) * 2 : (2 * k + rank + 1) * 2]]
        assert ranks[rank]["seen"] == expected
    # Every round, both ranks measured the same perplexities and set the same weights at the same positions.
    assert [r["round"] for r in ranks[0]["rounds"]] == [0, 1, 2, 3]
    assert ranks[0]["rounds"] == ranks[1]["rounds"]
    assert ranks[0]["weight_history"] == ranks[1]["weight_history"]
    assert len(ranks[0]["weight_history"]) == 4
    # The curriculum re-scored the same blocks from the same draw on both ranks (the planned order above,
    # which both trained, already follows the re-sorted order).
    assert [r["step"] for r in ranks[0]["rescores"]] == [3]
    assert ranks[0]["rescores"] == ranks[1]["rescores"]
    # Within a pass over a group, no block repeats.
    topic_of = ranks[0]["topic_of_index"]
    for group in set(topic_of):
        drawn = [index for index in planned if topic_of[index] == group]
        size = topic_of.count(group)
        assert len(set(drawn[:size])) == len(drawn[:size])
    # Tokens consumed are summed over ranks, so both ranks report the whole run.
    assert ranks[0]["tokens_consumed"] == ranks[1]["tokens_consumed"]
    assert sum(ranks[0]["tokens_consumed"].values()) == len(planned) * 32

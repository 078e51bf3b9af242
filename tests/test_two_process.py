"""Two processes (gloo): ranks share one planned order and together train on each planned block once."""

import json
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

WORKER = Path(__file__).parent / "workers" / "two_process_train.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_ranks_consume_every_planned_block_exactly_once(tmp_path):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        str(WORKER),
        str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["planned"] == ranks[1]["planned"]  # one global order, built identically on each rank
    planned = ranks[0]["planned"]
    assert len(planned) == 2 * 2 * 6
    # Each rank trained on its own share, and together they covered the planned order once.
    assert len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == len(planned) // 2
    assert Counter(ranks[0]["seen"]) + Counter(ranks[1]["seen"]) == Counter(planned)
    # Tokens consumed are summed over ranks, so both ranks report the whole run.
    assert ranks[0]["tokens_consumed"] == ranks[1]["tokens_consumed"]
    assert sum(ranks[0]["tokens_consumed"].values()) == len(planned) * 32

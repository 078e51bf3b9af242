"""Asking a backend for many requests as one resumable job, split across ranks: what synthesis and annotation share.

Every request has a key, a hash of what determines its answer, and every answer is turned into a record and
appended to a `RecordLog` the moment the backend returns it (`hf_cpt.utils.resumable.run_pending`). A restarted run
reads the records, skips every request with a finished record and asks only for the rest: nothing is lost and
nothing is asked twice. A request the backend gave up on is recorded with status `failed` and asked again by the
next run. Under `torch.distributed` each rank asks for every world-size-th pending request, and every rank ends
holding every record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from hf_cpt.generation.base import Completion, GenerationBackend, Messages, SamplingParams
from hf_cpt.utils.distributed import rank_and_world
from hf_cpt.utils.records import RecordLog, RecordWriter
from hf_cpt.utils.resumable import Keyed, run_pending

logger = logging.getLogger(__name__)


class Request(Keyed, Protocol):
    """One conversation to send: its key, its messages and how to sample it."""

    messages: Messages
    sampling: SamplingParams


RequestT = TypeVar("RequestT", bound=Request)


def run_requests(
    backend: GenerationBackend,
    requests: Sequence[RequestT],
    log: RecordLog,
    record: Callable[[RequestT, Completion], dict[str, Any]],
    *,
    chunk_size: int = 64,
    show_progress: bool = True,
    what: str = "Generation",
) -> dict[str, dict[str, Any]]:
    """Ask `backend` for every request of `requests` without a finished record in `log`; return all records by key.

    Args:
        backend: any `GenerationBackend`.
        requests: every request of the job, in order (requests sharing a sampling are sent together).
        log: the job's records, from every rank and every earlier run.
        record: the record of one answered request, with at least its `key` and a `status` (`failed` when the
            request failed, so that the next run asks again).
        chunk_size: requests handed to the backend at once (a progress unit; records are written one by one).
        show_progress: progress bars on the main process.
        what: names the job in log lines.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size is {chunk_size}; set it to 1 or more.")
    rank = rank_and_world()[0]

    def ask(pending: list[RequestT], records: RecordWriter) -> None:
        by_sampling: dict[SamplingParams, list[RequestT]] = {}
        for request in pending:
            by_sampling.setdefault(request.sampling, []).append(request)
        for sampling, group in by_sampling.items():
            for start in range(0, len(group), chunk_size):
                chunk = group[start : start + chunk_size]
                backend.generate(
                    [request.messages for request in chunk],
                    sampling,
                    show_progress=show_progress and rank == 0,
                    on_result=lambda index, completion, chunk=chunk: records.write(record(chunk[index], completion)),
                )
                logger.info("%s: %d of %d requests answered.", what, start + len(chunk), len(group))

    return run_pending(log, requests, ask, what=what)

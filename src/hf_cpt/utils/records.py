"""Append-only records of finished work items, so a long LLM or labeling job resumes without loss or repeats.

Each process appends one JSON line per finished item to its own file under a folder, and flushes and
syncs it at once: a killed process loses at most the item it was writing (a cut-short last line is
ignored on reading), never one it had finished. Reading merges every file of the folder and keeps the
latest record of each key, so an item done again (a failed request asked again by a later run)
replaces its earlier record instead of appearing twice.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TextIO

from hf_cpt.utils.errors import naming_path

FAILED = "failed"
"""The `status` of a record whose item failed (a request the backend gave up on): the next run does it again."""


class RecordLog:
    """JSONL records keyed by `key_field`, written by any number of processes and runs into one folder."""

    def __init__(self, folder: str | os.PathLike[str], key_field: str = "key") -> None:
        self.folder = Path(folder)
        self.key_field = key_field

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("*.jsonl"))

    def read(self) -> dict[str, dict[str, Any]]:
        """The latest record of every key on disk, in the order the keys were first written per file."""
        records: dict[str, dict[str, Any]] = {}
        for path in self.files():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the last line of a process killed while writing it
                records[record[self.key_field]] = record
        return records

    def finished_keys(self) -> set[str]:
        """The keys whose latest record is not `FAILED`: the items a restarted run skips."""
        return {key for key, record in self.read().items() if record.get("status") != FAILED}

    @contextmanager
    def writer(self, rank: int = 0) -> Iterator[RecordWriter]:
        """A writer to a new file of this process: `rank<r>-<time>-<pid>.jsonl`."""
        path = self.folder / f"rank{rank}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.jsonl"
        with naming_path(path):
            self.folder.mkdir(parents=True, exist_ok=True)
            handle = path.open("a", encoding="utf-8")
        try:
            yield RecordWriter(handle, path)
        except BaseException:
            with suppress(OSError):  # closing flushes again; the error that stopped the writing is the one to tell
                handle.close()
            raise
        with naming_path(path):
            handle.close()


class RecordWriter:
    """Writes one record per line and makes it durable before returning."""

    def __init__(self, handle: TextIO, path: str | os.PathLike[str] | None = None) -> None:
        self._handle = handle
        self._path = path if path is not None else handle.name

    def write(self, record: Mapping[str, Any]) -> None:
        with naming_path(self._path):  # a full disk: one sentence; the records written so far are kept
            self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._handle.flush()
            os.fsync(self._handle.fileno())

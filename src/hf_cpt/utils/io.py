"""Writing files so that nobody ever reads half of one, and datasets in the layout the Hub serves.

Long jobs are killed in the middle, and under `accelerate launch` one rank reads what another writes. So every
result file (a shard, a report, a converted model folder) is written under a temporary name beside its target
and renamed onto it when complete: a rename within one folder is atomic, so a reader, or a run restarted after a
kill, sees the old state or the whole new file, never a part of it. A write that fails for want of space or
permission raises a `WriteError` naming the target and the fix, and leaves the old state, so the same command
resumes once space is freed.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from hf_cpt.utils.errors import naming_path

if TYPE_CHECKING:
    from datasets import Dataset


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside `target` to write a file or a folder into, which replaces `target` on success.

    The temporary name keeps `target`'s suffix (`np.save` and others add their own otherwise). If the block
    raises, the temporary is removed and `target` is left as it was. When `target` is a folder that exists
    already (another process finished the same work first), the new copy is discarded and the existing one kept.

    Example:
        >>> with atomic_path(folder / "scores.npy") as temporary:
        ...     np.save(temporary, scores)
    """
    target = Path(target)
    temporary = target.with_name(f"{target.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{target.suffix}")
    try:
        with naming_path(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            yield temporary
            try:
                os.replace(temporary, target)
            except OSError:
                if not (temporary.is_dir() and target.is_dir()):
                    raise
    finally:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            temporary.unlink(missing_ok=True)


def write_text_atomically(path: str | os.PathLike[str], text: str) -> None:
    """Write a whole text file (UTF-8) through `atomic_path`."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def split_file(split: str = "train", data_dir: str = "data") -> str:
    """The path, inside a dataset folder, of a split saved as one parquet file: `data/train-00000-of-00001.parquet`."""
    return f"{data_dir}/{split}-00000-of-00001.parquet"


def save_split(dataset: Dataset, folder: str | os.PathLike[str], split: str = "train", data_dir: str = "data") -> Path:
    """Save `dataset` as the split `split` of a dataset folder in the Hub's layout, atomically; return the file.

    `load_dataset(folder)` (or `load_dataset(repo_id)` once the folder is pushed) reads it back as that split.

    Args:
        dataset: the rows to save.
        folder: the dataset folder (its `data_dir` sub-folder is created when missing).
        split: the split name the file is named after.
        data_dir: the sub-folder holding the files, e.g. `data/web-en` for one source of a corpus.
    """
    path = Path(folder) / split_file(split, data_dir)
    with atomic_path(path) as temporary:
        dataset.to_parquet(str(temporary))
    return path

"""One sentence for an error a user can fix; the traceback only when asked for.

Every check of hf-cpt that a user can answer (a bad value, a missing file, a full disk) raises with one sentence
naming the field or path and the fix. A command line that lets such an error escape buries that sentence under a
Python traceback, so entry points run through `run_main`: it prints the sentence alone on stderr and exits
non-zero. `--debug` on the command line or `HF_CPT_DEBUG=1` in the environment shows the traceback as well. Other
exceptions (a `TypeError`, a `KeyError`: bugs, not inputs) keep their traceback.
"""

from __future__ import annotations

import errno
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

DEBUG_ENV = "HF_CPT_DEBUG"
DEBUG_FLAG = "--debug"
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


class HFCPTError(Exception):
    """An error whose message is one sentence a user can act on (the field or path, and the fix)."""


class WriteError(OSError):
    """An OS error while writing a file, told as one sentence with the path and the fix (`os_error_sentence`).

    Keeps the original `errno` and `filename`, so callers that test for a full disk still can.
    """

    def __str__(self) -> str:
        return os_error_sentence(self)


@contextmanager
def naming_path(path: str | os.PathLike[str]) -> Iterator[None]:
    """Inside the block, an OS error (a full disk, a read-only folder) becomes a `WriteError` naming `path`.

    So does safetensors' own error for one (`SafetensorError: ... I/O error: ... (os error 28)`), which is not
    an `OSError`: a model or checkpoint written to a full disk gets the same sentence as any other file.
    """
    try:
        yield
    except WriteError:
        raise
    except OSError as error:
        if error.errno is None:
            raise
        raise WriteError(error.errno, error.strerror, os.fspath(path)) from error
    except Exception as error:
        number = _reported_errno(error)
        if number is None:
            raise
        raise WriteError(number, os.strerror(number), os.fspath(path)) from error


_REPORTED_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _reported_errno(error: Exception) -> int | None:
    """The errno a Rust library's exception (safetensors') reports in its message, or None for any other error."""
    if type(error).__name__ != "SafetensorError":
        return None
    match = _REPORTED_OS_ERROR.search(str(error))
    return int(match[1]) if match else None


# What the package raises for inputs and the environment; each is shown as its sentence.
USER_ERRORS: tuple[type[BaseException], ...] = (HFCPTError, ValueError, OSError, ImportError)

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def os_error_sentence(error: OSError, path: str | os.PathLike[str] | None = None) -> str:
    """One sentence for an OS error while reading or writing `path`: what happened there and what to change.

    A full disk or quota and a read-only or forbidden folder get their fix; every run of hf-cpt resumes, so the
    fix ends with running the same command again.
    """
    where = path if path is not None else error.filename
    place = f" {os.fspath(where)}" if where is not None else ""
    if error.errno in _NO_SPACE:
        return (
            f"No space left on the device while writing{place}; free space there (or set the output folder to "
            "another disk) and run the same command again: it resumes where it stopped."
        )
    if error.errno in _NOT_WRITABLE:
        return (
            f"Cannot write{place} ({os.strerror(error.errno)}); make that folder writable or set the output folder "
            "to a writable one, and run the same command again."
        )
    if error.errno == errno.ENOENT and where is not None:
        return f"{os.fspath(where)} does not exist; check the path (or create it) and run the command again."
    return str(error)


def error_sentence(error: BaseException) -> str:
    """The sentence to show for an error of `USER_ERRORS`: its own message, or one for a bare OS error."""
    if isinstance(error, OSError) and not isinstance(error, HFCPTError) and error.errno is not None:
        return os_error_sentence(error)
    return str(error).strip() or type(error).__name__


def debug_requested(argv: Sequence[str]) -> tuple[bool, list[str]]:
    """Whether the traceback is asked for (`--debug` in `argv` or `HF_CPT_DEBUG=1`), and `argv` without `--debug`."""
    arguments = list(argv)
    flag = DEBUG_FLAG in arguments
    if flag:
        arguments = [argument for argument in arguments if argument != DEBUG_FLAG]
    environment = os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    return flag or environment, arguments


def run_main(main: Callable[[list[str]], object], argv: Sequence[str] | None = None, *, prog: str = "hf-cpt") -> int:
    """Run `main(argv)` (without `--debug`); return 0, or print the error's one sentence and return non-zero.

    Example (an entry point):
        >>> if __name__ == "__main__":
        ...     sys.exit(run_main(my_main))
    """
    debug, arguments = debug_requested(sys.argv[1:] if argv is None else argv)
    try:
        main(arguments)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; run the same command again to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except USER_ERRORS as error:
        if debug:
            traceback.print_exc()
        else:
            print(f"{prog}: error: {error_sentence(error)}", file=sys.stderr)
            print(f"{prog}: (add {DEBUG_FLAG} or set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return EXIT_ERROR
    return 0


def parse_json_flag(flag: str, value: str, expected: str) -> object:
    """The JSON a command-line flag holds (`--stages '[...]'`), or one sentence naming the flag."""
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{flag} is not valid JSON ({error.msg} at character {error.pos}); give {expected} in JSON, "
            "quoted for the shell."
        ) from None

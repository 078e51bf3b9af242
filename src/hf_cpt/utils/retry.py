"""Trying a call again after transient failures: exponential backoff with jitter, honouring a server's Retry-After.

Servers under load (an OpenAI-compatible endpoint, the Hub) answer 429 or 5xx for a while and then recover. A
client that asks again at once makes it worse, and many clients that wait the same time come back together; so
attempt k waits `base * 2**(k-1)` seconds (at most `max_delay`), scaled by a random factor, and never less than
the Retry-After the server asked for.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """How long to wait before each retry.

    Args:
        base: seconds before the first retry; each further retry doubles it.
        max_delay: the longest wait, also for a longer Retry-After.
        jitter: the wait is scaled by a factor drawn uniformly from `[1 - jitter, 1]` (0: exact waits).
    """

    base: float = 1.0
    max_delay: float = 60.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.base < 0 or self.max_delay < 0:
            raise ValueError(f"backoff is {self.base} and max_backoff {self.max_delay}; set both to 0 or more seconds.")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter is {self.jitter}; set it to a value in [0, 1].")

    def delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (from 1), at least `retry_after` (capped)."""
        delay = min(self.max_delay, self.base * 2 ** (attempt - 1))
        if self.jitter:
            delay *= (rng or random).uniform(1.0 - self.jitter, 1.0)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_delay))
        return delay


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds: a number of seconds or an HTTP date. None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def retry(
    call: Callable[[int], T],
    *,
    tries: int,
    backoff: Backoff,
    retryable: Callable[[Exception], bool],
    retry_after: Callable[[Exception], float | None] = lambda error: None,
    on_retry: Callable[[int, float, Exception], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """`call(attempt)` for attempt 1, 2, ... until it returns, waiting `backoff.delay(...)` after each retryable error.

    Args:
        call: the work; it gets the number of the attempt (from 1).
        tries: attempts in all, at least 1.
        backoff: the waits.
        retryable: whether an error is transient; any other error is raised at once.
        retry_after: the wait an error asks for (a server's Retry-After), or None.
        on_retry: called with (attempt, delay, error) before each wait, e.g. to log it.
        sleep: waits; tests pass a recorder.
        rng: draws the jitter; default: the `random` module.

    Returns:
        What `call` returned. The error of the last attempt, or the first one that is not retryable, is raised.
    """
    if tries < 1:
        raise ValueError(f"max_tries is {tries}; set it to at least 1.")
    attempt = 1
    while True:
        try:
            return call(attempt)
        except Exception as error:
            if attempt >= tries or not retryable(error):
                raise
            delay = backoff.delay(attempt, retry_after(error), rng)
            if on_retry is not None:
                on_retry(attempt, delay, error)
            sleep(delay)
            attempt += 1

"""Any OpenAI-compatible `/chat/completions` server (vLLM serve, TGI, SGLang, hosted APIs), spoken with the
standard library only."""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, ClassVar, NamedTuple

from hf_cpt.generation.base import (
    Completion,
    GenerationBackend,
    IndexedCompletions,
    Messages,
    SamplingParams,
    describe_error,
    most_likely,
)
from hf_cpt.utils.retry import Backoff, retry, retry_after_seconds


class RetryRecord(NamedTuple):
    """One wait before a retry: which item, after which attempt, how long, and what went wrong."""

    item: int
    attempt: int
    delay: float
    reason: str


class _AttemptFailed(Exception):
    """One request that did not give a usable answer; `kind` is short ("HTTP 500"), `detail` the server's words."""

    def __init__(self, kind: str, detail: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.retryable = retryable
        self.retry_after = retry_after


def _server_message(body: bytes) -> str:
    """The error message an OpenAI-style server puts in `{"error": {"message": ...}}`, else the raw body."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        error = json.loads(text)["error"]
        message = error["message"] if isinstance(error, dict) else error
    except (ValueError, KeyError, TypeError):
        message = text
    return str(message)[:500] or "(empty response)"


def _openai_candidates(position: dict[str, Any]) -> dict[str, float]:
    """One position of `choices[0].logprobs.content` as {token: logprob}."""
    return {entry["token"]: float(entry["logprob"]) for entry in position["top_logprobs"]}


class OpenAIBackend(GenerationBackend):
    """Any OpenAI-compatible `/chat/completions` server, spoken with the standard library only.

    Requests run `max_concurrency` at a time. Rate limits (429), server errors (5xx), timeouts, broken
    connections and malformed answers are retried with exponential backoff and jitter, honouring a
    server's Retry-After; other client errors (400, 401, 404...) fail the item at once, since asking
    again would get the same answer. Every wait is kept in `retry_log` for the last `generate` call.
    """

    name: ClassVar[str] = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str = "http://localhost:8000/v1",
        api_key: str | None = None,
        max_concurrency: int = 8,
        timeout: float = 60.0,
        max_tries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        extra_body: dict[str, Any] | None = None,
        model_name: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency is {max_concurrency}; set it to at least 1.")
        if max_tries < 1:
            raise ValueError(f"max_tries is {max_tries}; set it to at least 1.")
        if timeout <= 0:
            raise ValueError(f"timeout is {timeout}; set it to a positive number of seconds.")
        self.backoff = Backoff(base=backoff, max_delay=max_backoff, jitter=0.5)
        self.model = model
        self.model_name = model_name or model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.max_tries = max_tries
        self.extra_body = dict(extra_body or {})
        self._sleep = sleep
        self._headers = {"Content-Type": "application/json"}
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if key:  # local servers (vLLM serve, TGI, SGLang) usually need none
            self._headers["Authorization"] = f"Bearer {key}"
        self._random = random.Random()
        self._log_lock = threading.Lock()
        self.retry_log: list[RetryRecord] = []

    def _completions(self, conversations: Sequence[Messages], params: SamplingParams) -> IndexedCompletions:
        self.retry_log = []
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            futures = {
                pool.submit(self._complete, index, conversation, params): index
                for index, conversation in enumerate(conversations)
            }
            for future in as_completed(futures):
                yield futures[future], future.result()
        self.retry_log.sort()

    def payload(self, conversation: Messages, params: SamplingParams) -> dict[str, Any]:
        """The request body; `extra_body` comes last so it can add or override any field."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": list(conversation),
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": params.seed,
        }
        if params.top_logprobs > 0:
            body.update(logprobs=True, top_logprobs=params.top_logprobs)
        body.update(self.extra_body)
        return body

    def _complete(self, index: int, conversation: Messages, params: SamplingParams) -> Completion:
        body = json.dumps(self.payload(conversation, params)).encode("utf-8")
        attempts = 0

        def attempt(number: int) -> Completion:
            nonlocal attempts
            attempts = number
            return self._parse(self._post(body), params, number)

        def record(number: int, delay: float, failure: Exception) -> None:
            with self._log_lock:
                self.retry_log.append(RetryRecord(index, number, delay, str(failure)))

        try:
            return retry(
                attempt,
                tries=self.max_tries,
                backoff=self.backoff,
                retryable=lambda failure: isinstance(failure, _AttemptFailed) and failure.retryable,
                retry_after=lambda failure: failure.retry_after,
                on_retry=record,
                sleep=self._sleep,
                rng=self._random,
            )
        except _AttemptFailed as failure:
            if not failure.retryable:
                return Completion.failed(f"{failure.kind} (not retried): {failure.detail}", attempts=attempts)
            tries = "try" if attempts == 1 else "tries"
            return Completion.failed(f"{failure.kind} after {attempts} {tries}: {failure.detail}", attempts=attempts)

    def _post(self, body: bytes) -> bytes:
        request = urllib.request.Request(self.url, data=body, headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            try:
                detail = _server_message(error.read())
            except (OSError, http.client.HTTPException):
                detail = str(error.reason)
            raise _AttemptFailed(
                f"HTTP {error.code}",
                detail,
                retryable=error.code == 429 or error.code >= 500,
                retry_after=retry_after_seconds(error.headers.get("Retry-After")),
            ) from error
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            reason = error.reason if isinstance(error, urllib.error.URLError) else error
            kind = "timed out" if isinstance(reason, TimeoutError) else "connection error"
            raise _AttemptFailed(kind, str(reason) or type(reason).__name__, retryable=True) from error

    @staticmethod
    def _parse(raw: bytes, params: SamplingParams, attempt: int) -> Completion:
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            text = choice["message"]["content"]
            if not isinstance(text, str):
                raise TypeError("choices[0].message.content is not a string")
            usage = data.get("usage") or {}
            top = None
            logprobs = choice.get("logprobs")
            if params.top_logprobs > 0 and logprobs and logprobs.get("content") is not None:
                top = [
                    most_likely(_openai_candidates(position), params.top_logprobs) for position in logprobs["content"]
                ]
            return Completion(
                text=text,
                finish_reason=choice.get("finish_reason"),
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                attempts=attempt,
                top_logprobs=top,
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
            detail = f"{describe_error(error)}; body starts {raw[:200]!r}"
            raise _AttemptFailed("malformed response", detail, retryable=True) from error

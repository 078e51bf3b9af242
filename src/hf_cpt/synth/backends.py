"""LLM generation behind one interface: plain transformers, vLLM offline, or an OpenAI-compatible server.

The synthetic-QA generator sends many prompts and wants completions; the topic annotator wants the
log-probabilities of label tokens. Both should run unchanged whether the model sits in this process
(transformers, the default, needs nothing extra), on a local GPU at full speed (vLLM), or behind an
HTTP server (vLLM serve, TGI, SGLang, hosted APIs). So every backend takes chat conversations and
`SamplingParams` and returns one `Completion` per conversation, in order. A failing item is recorded
in its `Completion` rather than raised, so one bad prompt or one overloaded request does not lose the
rest of a long run; configuration mistakes still raise at construction, where they can be fixed.
"""

from __future__ import annotations

import dataclasses
import email.utils
import http.client
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar, NamedTuple

import torch
from tqdm.auto import tqdm
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from hf_cpt.modeling import EMBEDDED_MODEL_ID, embedded_model_path, hardware_supports_bf16, load_causal_lm

Messages = list[dict[str, str]]
"""Chat messages, e.g. `[{"role": "user", "content": "..."}]`."""
ResultCallback = Callable[[int, "Completion"], None]
"""Called with (index of the conversation, its completion) as each one finishes."""


@dataclass(frozen=True)
class SamplingParams:
    """How to sample, in the terms all three backends share, so a run can switch backend and keep its settings."""

    max_new_tokens: int = 512
    temperature: float = 0.7
    """0 means greedy decoding."""
    top_p: float = 0.95
    seed: int = 0
    top_logprobs: int = 0
    """When > 0, keep the k most likely tokens (text -> logprob) at each generated position, where the backend
    exposes them."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens is {self.max_new_tokens}; set it to at least 1.")
        if self.temperature < 0:
            raise ValueError(f"temperature is {self.temperature}; set it to 0 (greedy) or more.")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p is {self.top_p}; set it to a value in (0, 1].")
        if self.top_logprobs < 0:
            raise ValueError(f"top_logprobs is {self.top_logprobs}; set it to 0 (none) or a positive count.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe values, used to key and record outputs so a result says how it was sampled."""
        return dataclasses.asdict(self)


@dataclass
class Completion:
    """One conversation's result; `text` is None when the request failed and `error` says why."""

    text: str | None
    finish_reason: str | None
    """Why generation ended: "stop" (the model ended it) or "length" (it used all max_new_tokens); None when failed."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    attempts: int = 1
    top_logprobs: list[dict[str, float]] | None = None
    """Per generated position, the most likely tokens as {token text: logprob}, most likely first."""

    @property
    def ok(self) -> bool:
        return self.text is not None and self.error is None


class GenerationBackend(ABC):
    """Turns chat conversations into completions; see the module docstring for the contract."""

    name: ClassVar[str]
    model_name: str
    """Recorded with every output, so a synthetic dataset says which model wrote it."""

    @abstractmethod
    def generate(
        self,
        conversations: Sequence[Messages],
        params: SamplingParams,
        *,
        show_progress: bool = False,
        on_result: ResultCallback | None = None,
    ) -> list[Completion]:
        """One Completion per conversation, in order. A failing item is recorded (error set), never raised.

        `on_result(index, completion)` is called for each conversation as soon as its completion is known
        (in whatever order they finish), so a caller can save finished work before the whole call returns.
        """


def _failed(error: str, prompt_tokens: int = 0, attempts: int = 1) -> Completion:
    return Completion(text=None, finish_reason=None, prompt_tokens=prompt_tokens, error=error, attempts=attempts)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _top_k(candidates: dict[str, float], k: int) -> dict[str, float]:
    """The k most likely entries, most likely first; servers may add the sampled token as a (k+1)-th."""
    return dict(sorted(candidates.items(), key=lambda item: -item[1])[:k])


# --------------------------------------------------------------------------------------------------
# transformers
# --------------------------------------------------------------------------------------------------


class TransformersBackend(GenerationBackend):
    """`model.generate` in this process: needs no server and no extra package, so it is the default.

    Prompts are sorted by length into batches so a batch pads little, and left-padded so every row's
    generation starts right after its own prompt; results come back in the callers' order.
    """

    name: ClassVar[str] = "transformers"

    def __init__(
        self,
        model: str | os.PathLike[str] | PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase | str | None = None,
        *,
        batch_size: int = 8,
        device: str | torch.device | None = None,
        bf16: bool | None = None,
        model_name: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size is {batch_size}; set it to at least 1.")
        self.batch_size = batch_size
        self.use_bf16 = hardware_supports_bf16() if bf16 is None else bf16
        if isinstance(model, str | os.PathLike):
            model_name = model_name or str(model)
            target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            # bf16 weights halve GPU memory; on a CPU fp32 weights under bf16 autocast are as fast and more exact.
            dtype = torch.bfloat16 if self.use_bf16 and target.type == "cuda" else torch.float32
            tokenizer = tokenizer if tokenizer is not None else str(model)
            model = load_causal_lm(str(model), dtype=dtype).to(target)
        else:
            if tokenizer is None:
                raise ValueError(
                    "A loaded model needs its tokenizer; pass tokenizer=..., or pass the model's id or folder instead."
                )
            if device is not None:
                model = model.to(device)
        if isinstance(tokenizer, str):
            tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        if tokenizer.chat_template is None:
            raise ValueError(
                "The tokenizer has no chat template, so conversations cannot be rendered into prompts; "
                "set tokenizer.chat_template or use a chat/instruct model."
            )
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = model_name or getattr(model.config, "name_or_path", "") or type(model).__name__
        self.eos_ids = self._eos_ids()
        # Padding is masked out, so any id serves; the eos fallback is the usual choice for models without a pad.
        if tokenizer.pad_token_id is not None:
            self.pad_id = tokenizer.pad_token_id
        else:
            self.pad_id = self.eos_ids[0] if self.eos_ids else 0

    def _eos_ids(self) -> list[int]:
        """The tokenizer's eos and the generation config's (which may list several, e.g. end-of-turn tokens)."""
        ids: list[int] = []
        for value in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            for token_id in value if isinstance(value, list) else [value]:
                if token_id is not None and token_id not in ids:
                    ids.append(token_id)
        return ids

    def encode(self, conversation: Messages) -> list[int]:
        """The prompt's token ids; the template writes any bos itself, so the tokenizer adds no special tokens."""
        text = self.tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(
        self,
        conversations: Sequence[Messages],
        params: SamplingParams,
        *,
        show_progress: bool = False,
        on_result: ResultCallback | None = None,
    ) -> list[Completion]:
        prompts = [self.encode(conversation) for conversation in conversations]
        # Longest first: a batch that does not fit in memory fails at the start, not after hours.
        order = sorted(range(len(prompts)), key=lambda index: -len(prompts[index]))
        results: list[Completion | None] = [None] * len(prompts)
        was_training = self.model.training
        self.model.eval()
        try:
            with tqdm(total=len(prompts), desc="generate", disable=not show_progress) as bar:
                for batch_index, start in enumerate(range(0, len(order), self.batch_size)):
                    indices = order[start : start + self.batch_size]
                    batch = [prompts[index] for index in indices]
                    try:
                        completions = self._generate_batch(batch, params, batch_index)
                    except RuntimeError as error:  # e.g. out of memory: this batch fails, the others go on
                        completions = [_failed(_describe(error), prompt_tokens=len(prompt)) for prompt in batch]
                    for index, completion in zip(indices, completions, strict=True):
                        results[index] = completion
                        if on_result is not None:
                            on_result(index, completion)
                    bar.update(len(indices))
        finally:
            self.model.train(was_training)
        return results  # type: ignore[return-value]  # every slot is filled above

    def _generate_batch(self, prompts: list[list[int]], params: SamplingParams, batch_index: int) -> list[Completion]:
        device = self.model.device
        width = max(len(prompt) for prompt in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            input_ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            attention_mask[row, width - len(prompt) :] = 1
        options: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": params.temperature > 0,
            "eos_token_id": self.eos_ids or None,
            "pad_token_id": self.pad_id,
            "return_dict_in_generate": True,
            # Raw logits, not the sampling-warped scores, so logprobs are the model's (as vLLM and servers report).
            "output_logits": params.top_logprobs > 0,
        }
        if params.temperature > 0:
            # top_k=0 turns off transformers' default top-k of 50, which vLLM and servers do not apply.
            options.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        # A forked RNG seeds this batch reproducibly without disturbing the caller's random state.
        rng_devices = [] if device.type == "cpu" else [device]
        with (
            torch.random.fork_rng(devices=rng_devices, device_type=device.type),
            torch.inference_mode(),
            torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=self.use_bf16),
        ):
            torch.manual_seed(params.seed + batch_index)
            output = self.model.generate(
                input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), **options
            )
        generated = output.sequences[:, width:].tolist()
        logprobs = None
        if params.top_logprobs > 0:
            steps = torch.stack(output.logits, dim=1).float().log_softmax(dim=-1)  # (batch, steps, vocab)
            logprobs = steps.topk(min(params.top_logprobs, steps.shape[-1]), dim=-1)
        completions = []
        for row, (prompt, tokens) in enumerate(zip(prompts, generated, strict=True)):
            end = next((position for position, token in enumerate(tokens) if token in self.eos_ids), None)
            finish_reason, count = ("length", len(tokens)) if end is None else ("stop", end + 1)
            top = None
            if logprobs is not None:
                values, ids = logprobs.values[row, :count].tolist(), logprobs.indices[row, :count].tolist()
                top = [self._token_logprobs(*position) for position in zip(ids, values, strict=True)]
            completions.append(
                Completion(
                    text=self.tokenizer.decode(tokens[:count], skip_special_tokens=True),
                    finish_reason=finish_reason,
                    prompt_tokens=len(prompt),
                    completion_tokens=count,
                    top_logprobs=top,
                )
            )
        return completions

    def _token_logprobs(self, ids: list[int], values: list[float]) -> dict[str, float]:
        """{token text: logprob}; when two ids decode to the same text the likelier one is kept."""
        entries: dict[str, float] = {}
        for token_id, value in zip(ids, values, strict=True):
            entries.setdefault(self.tokenizer.decode([token_id]), value)
        return entries


# --------------------------------------------------------------------------------------------------
# vLLM
# --------------------------------------------------------------------------------------------------

_VLLM_MISSING = (
    "vLLM is not installed; install it with pip install 'hf-cpt[vllm]' (it needs a CUDA GPU), "
    "or use backend='transformers' or 'openai'."
)


class VLLMBackend(GenerationBackend):
    """vLLM's offline engine in this process: the fastest choice on a GPU, with continuous batching.

    `llm.chat` applies the model's chat template itself, so conversations go in as they are.
    """

    name: ClassVar[str] = "vllm"

    def __init__(self, model: str | os.PathLike[str], *, model_name: str | None = None, **llm_kwargs: Any) -> None:
        try:
            import vllm
        except ImportError as error:
            raise ImportError(_VLLM_MISSING) from error
        self._vllm = vllm
        self.llm = vllm.LLM(model=str(model), **llm_kwargs)
        self.model_name = model_name or str(model)

    def generate(
        self,
        conversations: Sequence[Messages],
        params: SamplingParams,
        *,
        show_progress: bool = False,
        on_result: ResultCallback | None = None,
    ) -> list[Completion]:
        sampling = self._vllm.SamplingParams(
            max_tokens=params.max_new_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            logprobs=params.top_logprobs or None,
        )
        conversations = [list(conversation) for conversation in conversations]
        try:
            outputs = self.llm.chat(conversations, sampling_params=sampling, use_tqdm=show_progress)
            results = [self._completion(output, params) for output in outputs]
        except (ValueError, RuntimeError) as error:
            if len(conversations) <= 1:
                results = [_failed(_describe(error)) for _ in conversations]
            else:
                # vLLM rejects the whole call for one bad request (e.g. a prompt over the context): retry one
                # by one so only that item fails.
                results = [
                    self._generate_one(conversation, sampling, params)
                    for conversation in tqdm(conversations, desc="generate", disable=not show_progress)
                ]
        if on_result is not None:
            for index, completion in enumerate(results):
                on_result(index, completion)
        return results

    def _generate_one(self, conversation: Messages, sampling: Any, params: SamplingParams) -> Completion:
        try:
            (output,) = self.llm.chat([conversation], sampling_params=sampling, use_tqdm=False)
        except (ValueError, RuntimeError) as error:
            return _failed(_describe(error))
        return self._completion(output, params)

    @staticmethod
    def _completion(output: Any, params: SamplingParams) -> Completion:
        choice = output.outputs[0]
        top = None
        if params.top_logprobs > 0 and choice.logprobs is not None:
            top = [
                _top_k(
                    {
                        (logprob.decoded_token if logprob.decoded_token is not None else str(token_id)): logprob.logprob
                        for token_id, logprob in position.items()
                    },
                    params.top_logprobs,
                )
                for position in choice.logprobs
            ]
        return Completion(
            text=choice.text,
            finish_reason=choice.finish_reason,
            prompt_tokens=len(output.prompt_token_ids or []),
            completion_tokens=len(choice.token_ids),
            top_logprobs=top,
        )


# --------------------------------------------------------------------------------------------------
# OpenAI-compatible server
# --------------------------------------------------------------------------------------------------


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


def _retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds; it may be a number of seconds or an HTTP date."""
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
        if backoff < 0 or max_backoff < 0:
            raise ValueError(f"backoff is {backoff} and max_backoff {max_backoff}; set both to 0 or more seconds.")
        self.model = model
        self.model_name = model_name or model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.max_tries = max_tries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.extra_body = dict(extra_body or {})
        self._sleep = sleep
        self._headers = {"Content-Type": "application/json"}
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if key:  # local servers (vLLM serve, TGI, SGLang) usually need none
            self._headers["Authorization"] = f"Bearer {key}"
        self._random = random.Random()
        self._log_lock = threading.Lock()
        self.retry_log: list[RetryRecord] = []

    def generate(
        self,
        conversations: Sequence[Messages],
        params: SamplingParams,
        *,
        show_progress: bool = False,
        on_result: ResultCallback | None = None,
    ) -> list[Completion]:
        self.retry_log = []
        results: list[Completion | None] = [None] * len(conversations)
        with (
            ThreadPoolExecutor(max_workers=self.max_concurrency) as pool,
            tqdm(total=len(conversations), desc="generate", disable=not show_progress) as bar,
        ):
            futures = {
                pool.submit(self._complete, index, conversation, params): index
                for index, conversation in enumerate(conversations)
            }
            for future in as_completed(futures):
                index = futures[future]
                results[index] = future.result()
                if on_result is not None:
                    on_result(index, results[index])
                bar.update(1)
        self.retry_log.sort()
        return results  # type: ignore[return-value]  # every slot is filled above

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
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._parse(self._post(body), params, attempt)
            except _AttemptFailed as failure:
                if not failure.retryable:
                    return _failed(f"{failure.kind} (not retried): {failure.detail}", attempts=attempt)
                if attempt >= self.max_tries:
                    tries = "try" if attempt == 1 else "tries"
                    return _failed(f"{failure.kind} after {attempt} {tries}: {failure.detail}", attempts=attempt)
                delay = self._delay(attempt, failure.retry_after)
                with self._log_lock:
                    self.retry_log.append(RetryRecord(index, attempt, delay, str(failure)))
                self._sleep(delay)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter (so many waiting clients do not return at once), at least Retry-After."""
        delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * self._random.uniform(0.5, 1.0)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_backoff))
        return delay

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
                retry_after=_retry_after_seconds(error.headers.get("Retry-After")),
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
                top = [_top_k(_openai_candidates(position), params.top_logprobs) for position in logprobs["content"]]
            return Completion(
                text=text,
                finish_reason=choice.get("finish_reason"),
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                attempts=attempt,
                top_logprobs=top,
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
            detail = f"{_describe(error)}; body starts {raw[:200]!r}"
            raise _AttemptFailed("malformed response", detail, retryable=True) from error


# --------------------------------------------------------------------------------------------------
# choosing a backend
# --------------------------------------------------------------------------------------------------

_REGISTRY: dict[str, type[GenerationBackend]] = {
    TransformersBackend.name: TransformersBackend,
    VLLMBackend.name: VLLMBackend,
    OpenAIBackend.name: OpenAIBackend,
}
BACKENDS = tuple(_REGISTRY)


def load_backend(name: str = "transformers", model: str | Any = None, **options: Any) -> GenerationBackend:
    """The backend called `name` for `model`, with `options` passed to its constructor.

    Without a model, the local backends use the embedded default model, so a first run needs nothing
    downloaded; a server needs the name it serves its model under.
    """
    if name not in _REGISTRY:
        raise ValueError(f"Unknown backend {name!r}; set backend to one of {', '.join(BACKENDS)}.")
    if model is None:
        if name == OpenAIBackend.name:
            raise ValueError("backend='openai' needs model=<the model name the server serves>; set model.")
        model = str(embedded_model_path())
        options.setdefault("model_name", EMBEDDED_MODEL_ID)  # recorded with outputs: the Hub name, not a cache path
    return _REGISTRY[name](model, **options)

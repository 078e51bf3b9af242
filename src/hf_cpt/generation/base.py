"""The interface every generation backend implements: chat conversations and `SamplingParams` in, one
`Completion` per conversation out, in order.

Synthetic QA wants completions; topic annotation wants the log-probabilities of label tokens. Both should run
unchanged whether the model sits in this process (transformers, the default, needs nothing extra), on a local GPU
at full speed (vLLM), or behind an HTTP server (vLLM serve, TGI, SGLang, hosted APIs). A failing item is recorded
in its `Completion` rather than raised, so one bad prompt or one overloaded request does not lose the rest of a
long run; configuration mistakes still raise at construction, where they can be fixed.
"""

from __future__ import annotations

import dataclasses
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from tqdm.auto import tqdm

Messages = list[dict[str, str]]
"""Chat messages, e.g. `[{"role": "user", "content": "..."}]`."""
ResultCallback = Callable[[int, "Completion"], None]
"""Called with (index of the conversation, its completion) as each one finishes."""
IndexedCompletions = Iterator[tuple[int, "Completion"]]
"""(index of the conversation, its completion) pairs, in the order the completions finish."""


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

    @classmethod
    def failed(cls, error: str, prompt_tokens: int = 0, attempts: int = 1) -> Completion:
        """The result of a request that gave no text, saying why."""
        return cls(text=None, finish_reason=None, prompt_tokens=prompt_tokens, error=error, attempts=attempts)


class GenerationBackend(ABC):
    """Turns chat conversations into completions; see the module docstring for the contract."""

    name: ClassVar[str]
    model_name: str
    """Recorded with every output, so a synthetic dataset says which model wrote it."""

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
        results: list[Completion | None] = [None] * len(conversations)
        with tqdm(total=len(conversations), desc="generate", disable=not show_progress) as bar:
            for index, completion in self._completions(conversations, params):
                results[index] = completion
                if on_result is not None:
                    on_result(index, completion)
                bar.update(1)
        if None in results:
            raise RuntimeError(f"{type(self).__name__} returned no completion for conversation {results.index(None)}.")
        return results  # type: ignore[return-value]  # every slot is filled: checked above

    @abstractmethod
    def _completions(self, conversations: Sequence[Messages], params: SamplingParams) -> IndexedCompletions:
        """(index, completion) once for every conversation, as each finishes: what a backend implements."""


def describe_error(error: BaseException) -> str:
    """`Type: message`, what a failed `Completion` records."""
    return f"{type(error).__name__}: {error}"


def most_likely(candidates: dict[str, float], k: int) -> dict[str, float]:
    """The k most likely entries, most likely first; servers may add the sampled token as a (k+1)-th."""
    return dict(sorted(candidates.items(), key=lambda item: -item[1])[:k])


# Each backend's module is imported only when it is asked for: the OpenAI client needs neither torch nor vLLM.
_BACKEND_CLASSES = {
    "transformers": ("hf_cpt.generation.transformers", "TransformersBackend"),
    "vllm": ("hf_cpt.generation.vllm", "VLLMBackend"),
    "openai": ("hf_cpt.generation.openai", "OpenAIBackend"),
}
BACKENDS = tuple(_BACKEND_CLASSES)


def load_backend(name: str = "transformers", model: str | Any = None, **options: Any) -> GenerationBackend:
    """The backend called `name` for `model`, with `options` passed to its constructor.

    Without a model, the local backends use the embedded default model, so a first run needs nothing
    downloaded; a server needs the name it serves its model under.

    Args:
        name: `transformers` (`TransformersBackend`), `vllm` (`VLLMBackend`) or `openai` (`OpenAIBackend`).
        model: a Hub id or folder (or a loaded model for `transformers`); for `openai`, the served model name.
        options: the backend's own arguments, e.g. `batch_size=16` or `base_url="http://localhost:8000/v1"`.
    """
    if name not in _BACKEND_CLASSES:
        raise ValueError(f"Unknown backend {name!r}; set backend to one of {', '.join(BACKENDS)}.")
    if model is None:
        if name == "openai":
            raise ValueError("backend='openai' needs model=<the model name the server serves>; set model.")
        from hf_cpt.modeling import EMBEDDED_MODEL_ID, embedded_model_path

        model = str(embedded_model_path())
        options.setdefault("model_name", EMBEDDED_MODEL_ID)  # recorded with outputs: the Hub name, not a cache path
    module, class_name = _BACKEND_CLASSES[name]
    return getattr(importlib.import_module(module), class_name)(model, **options)


def load_configured_backend(
    name: str, model: str | None, *, batch_size: int, base_url: str | None = None
) -> GenerationBackend:
    """`load_backend` with the settings a recipe section gives every backend (`synthesis`,
    `topic_classifier.annotate`): `batch_size` reaches `transformers`, `base_url` the `openai` server; `vllm`
    schedules its own batches."""
    options = {"transformers": {"batch_size": batch_size}, "openai": {"base_url": base_url}}.get(name, {})
    return load_backend(name, model, **options)

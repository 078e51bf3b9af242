"""vLLM's offline engine in this process: the fastest backend on a GPU, with continuous batching."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar

from hf_cpt.generation.base import (
    Completion,
    GenerationBackend,
    IndexedCompletions,
    Messages,
    SamplingParams,
    describe_error,
    most_likely,
)
from hf_cpt.utils.imports import missing_extra_error


class VLLMBackend(GenerationBackend):
    """vLLM's offline engine in this process: the fastest choice on a GPU, with continuous batching.

    `llm.chat` applies the model's chat template itself, so conversations go in as they are.
    """

    name: ClassVar[str] = "vllm"

    def __init__(self, model: str | os.PathLike[str], *, model_name: str | None = None, **llm_kwargs: Any) -> None:
        try:
            import vllm
        except ImportError as error:
            raise missing_extra_error("vllm", "use backend='transformers' or 'openai'") from error
        self._vllm = vllm
        self.llm = vllm.LLM(model=str(model), **llm_kwargs)
        self.model_name = model_name or str(model)

    def _completions(self, conversations: Sequence[Messages], params: SamplingParams) -> IndexedCompletions:
        sampling = self._vllm.SamplingParams(
            max_tokens=params.max_new_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            logprobs=params.top_logprobs or None,
        )
        conversations = [list(conversation) for conversation in conversations]
        try:
            outputs = self.llm.chat(conversations, sampling_params=sampling, use_tqdm=False)
        except (ValueError, RuntimeError) as error:
            if len(conversations) <= 1:
                yield from ((index, Completion.failed(describe_error(error))) for index in range(len(conversations)))
            else:
                # vLLM rejects the whole call for one bad request (e.g. a prompt over the context): retry one
                # by one so only that item fails.
                for index, conversation in enumerate(conversations):
                    yield index, self._generate_one(conversation, sampling, params)
            return
        yield from enumerate(self._completion(output, params) for output in outputs)

    def _generate_one(self, conversation: Messages, sampling: Any, params: SamplingParams) -> Completion:
        try:
            (output,) = self.llm.chat([conversation], sampling_params=sampling, use_tqdm=False)
        except (ValueError, RuntimeError) as error:
            return Completion.failed(describe_error(error))
        return self._completion(output, params)

    @staticmethod
    def _completion(output: Any, params: SamplingParams) -> Completion:
        choice = output.outputs[0]
        top = None
        if params.top_logprobs > 0 and choice.logprobs is not None:
            top = [
                most_likely(
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

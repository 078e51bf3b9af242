"""The generation backends: transformers on a tiny model, vLLM through a stand-in module, and the
OpenAI-compatible client against a scripted loopback server that injects failures."""

from __future__ import annotations

import re
import socket
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from chat_server import (
    BAD_REQUEST,
    HANG,
    MALFORMED_JSON,
    NO_CONTENT,
    RATE_LIMITED,
    SERVER_ERROR,
    UNAVAILABLE_UNTIL,
    ChatServer,
    answer,
)
from conftest import make_model, make_tokenizer

from hf_cpt.generation import (
    BACKENDS,
    Completion,
    GenerationBackend,
    OpenAIBackend,
    SamplingParams,
    TransformersBackend,
    VLLMBackend,
    load_backend,
)

# Renders only the words of the messages, then one fixed word as the generation prompt.
TEMPLATE = "{% for m in messages %}{{ m['content'] }} {% endfor %}{% if add_generation_prompt %}g1w0{% endif %}"
EOS = 1
GREEDY = SamplingParams(max_new_tokens=6, temperature=0)


def conversation(words: int, group: int = 0) -> list[dict[str, str]]:
    return [{"role": "user", "content": " ".join(f"g{group}w{i}" for i in range(words))}]


# Prompts of 2..7 tokens, deliberately not in length order.
CONVERSATIONS = [conversation(words) for words in (3, 1, 6, 2, 5, 4)]


@pytest.fixture()
def chat_tokenizer(tmp_path):
    tokenizer = make_tokenizer(tmp_path / "tokenizer")
    tokenizer.chat_template = TEMPLATE
    return tokenizer


@pytest.fixture()
def model(chat_tokenizer):
    return make_model(len(chat_tokenizer))


def transformers_backend(model, tokenizer, batch_size: int = 4) -> TransformersBackend:
    return TransformersBackend(model, tokenizer, batch_size=batch_size, bf16=False)


def force_eos(model, when) -> None:
    """Makes the model's next token eos for rows where `when(sequence lengths)` holds, and never eos elsewhere."""

    def hook(module, args, kwargs, output):
        lengths = kwargs["position_ids"][:, -1] + 1  # positions count real tokens only, whatever the padding
        output.logits[:, -1, EOS] = torch.where(when(lengths), 1e4, -1e4)
        return output

    model.register_forward_hook(hook, with_kwargs=True)


def summary(completions: list[Completion]) -> list[tuple]:
    return [(c.text, c.finish_reason, c.prompt_tokens, c.completion_tokens) for c in completions]


# --------------------------------------------------------------------------------------------------
# transformers
# --------------------------------------------------------------------------------------------------


def test_transformers_batched_generation_equals_one_conversation_at_a_time(model, chat_tokenizer):
    backend = transformers_backend(model, chat_tokenizer, batch_size=4)
    batched = backend.generate(CONVERSATIONS, GREEDY)
    alone = [backend.generate([c], GREEDY)[0] for c in CONVERSATIONS]
    assert len(batched) == len(CONVERSATIONS)
    assert summary(batched) == summary(alone)
    # prompt_tokens is the unpadded prompt length (the words plus the generation-prompt word), in input order.
    assert [c.prompt_tokens for c in batched] == [words + 1 for words in (3, 1, 6, 2, 5, 4)]
    assert len({c.text for c in batched}) > 1  # different prompts, different answers: order is observable


def test_transformers_batch_size_one_equals_batch_size_four(model, chat_tokenizer):
    four = transformers_backend(model, chat_tokenizer, batch_size=4).generate(CONVERSATIONS, GREEDY)
    one = transformers_backend(model, chat_tokenizer, batch_size=1).generate(CONVERSATIONS, GREEDY)
    assert summary(four) == summary(one)


def test_transformers_finish_reason_length_without_eos(model, chat_tokenizer):
    force_eos(model, lambda lengths: lengths < 0)
    completions = transformers_backend(model, chat_tokenizer).generate(CONVERSATIONS, GREEDY)
    assert all(c.ok for c in completions)
    assert {c.finish_reason for c in completions} == {"length"}
    assert {c.completion_tokens for c in completions} == {GREEDY.max_new_tokens}
    assert all(len(c.text.split()) == GREEDY.max_new_tokens for c in completions)


def test_transformers_finish_reason_stop_at_eos(model, chat_tokenizer):
    force_eos(model, lambda lengths: lengths >= 0)
    completions = transformers_backend(model, chat_tokenizer).generate(CONVERSATIONS, GREEDY)
    assert [(c.text, c.finish_reason, c.completion_tokens) for c in completions] == [("", "stop", 1)] * 6


def test_transformers_rows_of_a_batch_stop_at_their_own_eos(model, chat_tokenizer):
    # eos once a row holds 10 tokens: a prompt of p tokens stops after 11 - p generated tokens, eos included.
    force_eos(model, lambda lengths: lengths >= 10)
    batched = transformers_backend(model, chat_tokenizer, batch_size=4).generate(CONVERSATIONS, GREEDY)
    by_prompt = {c.prompt_tokens: c for c in batched}
    for prompt_tokens in (2, 3, 4):
        assert (by_prompt[prompt_tokens].finish_reason, by_prompt[prompt_tokens].completion_tokens) == ("length", 6)
    for prompt_tokens in (5, 6, 7):  # eos as the 6th, 5th, 4th token; the text leaves it out
        completion = by_prompt[prompt_tokens]
        assert (completion.finish_reason, completion.completion_tokens) == ("stop", 11 - prompt_tokens)
        assert len(completion.text.split()) == 10 - prompt_tokens
    alone = transformers_backend(model, chat_tokenizer, batch_size=1).generate(CONVERSATIONS, GREEDY)
    assert summary(batched) == summary(alone)


def test_transformers_sampling_is_reproducible_and_seeded(model, chat_tokenizer):
    backend = transformers_backend(model, chat_tokenizer)
    params = SamplingParams(max_new_tokens=8, temperature=1.0, top_p=1.0, seed=7)
    first = backend.generate(CONVERSATIONS, params)
    second = backend.generate(CONVERSATIONS, params)
    other_seed = backend.generate(CONVERSATIONS, SamplingParams(max_new_tokens=8, temperature=1.0, top_p=1.0, seed=8))
    greedy = backend.generate(CONVERSATIONS, SamplingParams(max_new_tokens=8, temperature=0))
    assert summary(first) == summary(second)
    assert [c.text for c in first] != [c.text for c in other_seed]
    assert [c.text for c in first] != [c.text for c in greedy]


def test_transformers_leaves_the_callers_random_state_alone(model, chat_tokenizer):
    backend = transformers_backend(model, chat_tokenizer)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    backend.generate(CONVERSATIONS[:2], SamplingParams(max_new_tokens=4, temperature=1.0))
    assert torch.equal(torch.rand(3), expected)


def test_transformers_top_logprobs_are_the_models_log_probabilities(model, chat_tokenizer):
    backend = transformers_backend(model, chat_tokenizer)
    completions = backend.generate(CONVERSATIONS, SamplingParams(max_new_tokens=5, temperature=0, top_logprobs=3))
    for completion in completions:
        assert len(completion.top_logprobs) == completion.completion_tokens == 5
        for position, (word, entries) in enumerate(zip(completion.text.split(), completion.top_logprobs, strict=True)):
            values = list(entries.values())
            assert len(entries) == 3
            assert all(value <= 0 for value in values)
            assert values == sorted(values, reverse=True)
            assert next(iter(entries)) == word, f"greedy picks the most likely token at position {position}"
    # The first position's values are log-softmax of the model's logits after the prompt.
    prompt = torch.tensor([backend.encode(CONVERSATIONS[0])])
    with torch.no_grad():
        expected = model(prompt).logits[0, -1].log_softmax(dim=-1)
    top = expected.topk(3)
    words = [chat_tokenizer.decode([token_id]) for token_id in top.indices.tolist()]
    assert completions[0].top_logprobs[0] == pytest.approx(dict(zip(words, top.values.tolist(), strict=True)), abs=1e-4)


def test_transformers_keeps_callers_tokenizer_and_training_mode(model, chat_tokenizer):
    model.train()
    transformers_backend(model, chat_tokenizer).generate(CONVERSATIONS, GREEDY)
    assert model.training
    assert chat_tokenizer.padding_side == "right"


def test_transformers_records_a_failing_batch_and_goes_on(model, chat_tokenizer, monkeypatch):
    generate = model.generate
    calls = []

    def first_call_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory")
        return generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", first_call_fails)
    completions = transformers_backend(model, chat_tokenizer, batch_size=4).generate(CONVERSATIONS, GREEDY)
    failed = [c for c in completions if not c.ok]
    assert len(failed) == 4  # the first batch
    assert all(c.text is None and c.finish_reason is None and "out of memory" in c.error for c in failed)
    assert sum(c.ok for c in completions) == 2


def test_transformers_needs_a_chat_template(tmp_path, model):
    tokenizer = make_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="tokenizer.chat_template"):
        TransformersBackend(model, tokenizer)


def test_transformers_loaded_model_needs_its_tokenizer(model):
    with pytest.raises(ValueError, match="tokenizer="):
        TransformersBackend(model)


# --------------------------------------------------------------------------------------------------
# OpenAI-compatible server
# --------------------------------------------------------------------------------------------------

SCRIPT = {
    1: [RATE_LIMITED],
    2: [SERVER_ERROR, SERVER_ERROR],
    3: [HANG],
    4: [MALFORMED_JSON],
    5: [NO_CONTENT],
    6: [BAD_REQUEST],
    7: [SERVER_ERROR] * 10,  # always fails
    8: [HANG] * 10,  # always times out
    9: [UNAVAILABLE_UNTIL],
}


def items(count: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"Write about item {index}."}] for index in range(count)]


def no_sleep(delay: float) -> None:
    """Retries go at once, so the test is fast; the chosen delays are in `retry_log`."""


def openai_backend(base_url: str, **options: Any) -> OpenAIBackend:
    values = dict(base_url=base_url, max_concurrency=3, max_tries=3, timeout=0.3, backoff=1.0, sleep=no_sleep)
    values.update(options)
    return OpenAIBackend("test-model", **values)


def test_openai_every_item_is_answered_or_fails_with_its_reason():
    server = ChatServer(SCRIPT, retry_after=3, hang=1.0)
    with server.running() as base_url:
        backend = openai_backend(base_url, api_key="sk-test")
        completions = backend.generate(items(16), SamplingParams(max_new_tokens=32))

    assert len(completions) == 16
    failed = {index: c for index, c in enumerate(completions) if not c.ok}
    assert set(failed) == {6, 7, 8}
    for index, completion in enumerate(completions):
        if completion.ok:
            assert completion.text == answer(index)
            assert completion.attempts == 1 + len(SCRIPT.get(index, []))
        assert server.counts[index] <= 3
        assert server.counts[index] == completion.attempts

    assert failed[6].attempts == 1 and server.counts[6] == 1
    assert failed[6].error == "HTTP 400 (not retried): bad request for item 6"
    assert failed[7].attempts == 3
    assert failed[7].error == "HTTP 500 after 3 tries: internal error on item 7"
    assert failed[8].attempts == 3 and failed[8].error.startswith("timed out after 3 tries")
    assert all(c.text is None and c.finish_reason is None for c in failed.values())

    waits = {(record.item, record.attempt): record for record in backend.retry_log}
    assert waits[(1, 1)].delay >= 3 and "HTTP 429" in waits[(1, 1)].reason
    # Retry-After as an HTTP date about 3 s ahead (whole seconds); backoff alone would wait at most 1 s.
    assert waits[(9, 1)].delay >= 1.5 and "HTTP 503" in waits[(9, 1)].reason
    assert "timed out" in waits[(3, 1)].reason
    assert "malformed response" in waits[(4, 1)].reason and "malformed response" in waits[(5, 1)].reason
    assert set(waits) == {(1, 1), (2, 1), (2, 2), (3, 1), (4, 1), (5, 1), (7, 1), (7, 2), (8, 1), (8, 2), (9, 1)}

    assert 1 < server.max_in_flight <= 3
    assert {request["headers"].get("Authorization") for request in server.requests} == {"Bearer sk-test"}


def test_openai_backoff_is_exponential_with_jitter_and_capped():
    server = ChatServer({0: [SERVER_ERROR] * 4, 1: [RATE_LIMITED]}, retry_after=30)
    with server.running() as base_url:
        backend = openai_backend(base_url, max_tries=5, backoff=1.0, max_backoff=3.0)
        completions = backend.generate(items(2), SamplingParams())
    assert all(c.ok for c in completions)
    delays = {(record.item, record.attempt): record.delay for record in backend.retry_log}
    assert 0.5 <= delays[(0, 1)] <= 1
    assert 1 <= delays[(0, 2)] <= 2
    assert 1.5 <= delays[(0, 3)] <= 3  # 4 s capped at max_backoff 3
    assert 1.5 <= delays[(0, 4)] <= 3
    assert delays[(1, 1)] == 3  # Retry-After 30 s, capped at max_backoff


def test_openai_sleeps_the_recorded_delays():
    slept = []
    server = ChatServer({0: [SERVER_ERROR, RATE_LIMITED]}, retry_after=2)
    with server.running() as base_url:
        backend = openai_backend(base_url, sleep=slept.append)
        backend.generate(items(1), SamplingParams())
    assert slept == [record.delay for record in backend.retry_log]
    assert len(slept) == 2 and slept[1] >= 2


def test_openai_request_body_and_response_mapping():
    server = ChatServer({})
    with server.running() as base_url:
        backend = openai_backend(base_url, extra_body={"top_k": 20, "max_tokens": 99})
        params = SamplingParams(max_new_tokens=32, temperature=0.5, top_p=0.9, seed=3, top_logprobs=2)
        (completion,) = backend.generate(items(4)[3:], params)
    (request,) = server.requests
    assert request["body"] == {
        "model": "test-model",
        "messages": items(4)[3],
        "max_tokens": 99,  # extra_body overrides
        "temperature": 0.5,
        "top_p": 0.9,
        "seed": 3,
        "logprobs": True,
        "top_logprobs": 2,
        "top_k": 20,
    }
    assert (completion.text, completion.finish_reason) == ("answer 3", "stop")
    assert (completion.prompt_tokens, completion.completion_tokens) == (13, 2)
    # The server sent k + 1 candidates per position; the k most likely are kept.
    assert completion.top_logprobs == [{"answer0": -0.1, "answer1": -1.1}, {"30": -0.1, "31": -1.1}]
    assert backend.model_name == "test-model"


def test_openai_api_key_from_environment_or_none(monkeypatch):
    server = ChatServer({})
    with server.running() as base_url:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
        openai_backend(base_url).generate(items(1), SamplingParams())
        monkeypatch.delenv("OPENAI_API_KEY")
        openai_backend(base_url).generate(items(1), SamplingParams())
    assert server.requests[0]["headers"].get("Authorization") == "Bearer sk-env"
    assert "Authorization" not in server.requests[1]["headers"]


def test_openai_connection_refused_is_retried_then_recorded():
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = openai_backend(f"http://127.0.0.1:{port}/v1")
    (completion,) = backend.generate(items(1), SamplingParams())
    assert not completion.ok and completion.attempts == 3
    assert completion.error.startswith("connection error after 3 tries")
    assert [record.attempt for record in backend.retry_log] == [1, 2]


# --------------------------------------------------------------------------------------------------
# vLLM, through a stand-in module shaped like vLLM's offline API
# --------------------------------------------------------------------------------------------------


def fake_vllm(calls: dict[str, list]) -> types.ModuleType:
    module = types.ModuleType("vllm")

    class Logprob:
        def __init__(self, logprob: float, decoded_token: str | None):
            self.logprob, self.decoded_token = logprob, decoded_token

    class SamplingParams:
        def __init__(self, **kwargs):
            calls["sampling"].append(kwargs)

    class LLM:
        def __init__(self, **kwargs):
            calls["llm"].append(kwargs)

        def chat(self, messages, sampling_params=None, use_tqdm=True):
            calls["chat"].append((messages, use_tqdm))
            if any("too long" in m[-1]["content"] for m in messages):
                raise ValueError("prompt is longer than the maximum model length")
            outputs = []
            for index, conversation in enumerate(messages):
                words = conversation[-1]["content"].split()
                logprobs = [
                    # The sampled token (id 9) comes as a k+1-th candidate, as vLLM reports it.
                    {5: Logprob(-0.5, "a"), 6: Logprob(-1.5, "b"), 9: Logprob(-3.0, None)}
                    for _ in words
                ]
                finish = "stop" if index % 2 == 0 else "length"
                choice = types.SimpleNamespace(
                    text=" ".join(reversed(words)), finish_reason=finish, token_ids=[1] * len(words), logprobs=logprobs
                )
                outputs.append(types.SimpleNamespace(prompt_token_ids=[0] * (len(words) + 4), outputs=[choice]))
            return outputs

    module.LLM, module.SamplingParams = LLM, SamplingParams
    return module


@pytest.fixture()
def vllm_calls(monkeypatch):
    calls: dict[str, list] = {"llm": [], "sampling": [], "chat": []}
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm(calls))
    return calls


def test_vllm_maps_requests_and_outputs(vllm_calls):
    backend = VLLMBackend("some/model", tensor_parallel_size=2)
    conversations = [[{"role": "user", "content": "one two"}], [{"role": "user", "content": "three four five"}]]
    params = SamplingParams(max_new_tokens=20, temperature=0.3, top_p=0.8, seed=4, top_logprobs=2)
    completions = backend.generate(conversations, params, show_progress=False)
    assert vllm_calls["llm"] == [{"model": "some/model", "tensor_parallel_size": 2}]
    assert vllm_calls["sampling"] == [dict(max_tokens=20, temperature=0.3, top_p=0.8, seed=4, logprobs=2)]
    assert vllm_calls["chat"] == [(conversations, False)]
    assert summary(completions) == [("two one", "stop", 6, 2), ("five four three", "length", 7, 3)]
    assert completions[1].top_logprobs == [{"a": -0.5, "b": -1.5}] * 3
    assert backend.model_name == "some/model"


def test_vllm_without_top_logprobs_asks_for_none(vllm_calls):
    (completion,) = VLLMBackend("m").generate([[{"role": "user", "content": "x"}]], SamplingParams())
    assert vllm_calls["sampling"][0]["logprobs"] is None
    assert completion.top_logprobs is None


def test_vllm_one_rejected_request_fails_only_itself(vllm_calls):
    conversations = [[{"role": "user", "content": text}] for text in ("fine", "too long", "also fine")]
    completions = VLLMBackend("m").generate(conversations, SamplingParams())
    assert [c.ok for c in completions] == [True, False, True]
    assert [c.text for c in completions] == ["fine", None, "fine also"]
    assert "longer than the maximum model length" in completions[1].error


def test_vllm_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail
    message = 'vLLM is not installed; install it with `pip install "hf-cpt[vllm]"` (it needs a CUDA GPU), or use '
    with pytest.raises(ImportError, match=f"^{re.escape(message)}backend='transformers' or 'openai'\\.$"):
        VLLMBackend("m")


# --------------------------------------------------------------------------------------------------
# choosing a backend, and the parameters
# --------------------------------------------------------------------------------------------------


def test_load_backend_by_name(tmp_path, vllm_calls):
    folder = tmp_path / "chat-model"
    tokenizer = make_tokenizer(folder)
    tokenizer.chat_template = TEMPLATE
    tokenizer.save_pretrained(folder)
    make_model(len(tokenizer)).save_pretrained(folder)

    assert BACKENDS == ("transformers", "vllm", "openai")
    local = load_backend("transformers", str(folder), batch_size=2, bf16=False, device="cpu")
    assert isinstance(local, TransformersBackend) and local.batch_size == 2
    assert local.model_name == str(folder)
    assert local.generate([conversation(2)], GREEDY)[0].completion_tokens == GREEDY.max_new_tokens
    assert isinstance(load_backend("vllm", "m"), VLLMBackend)
    remote = load_backend("openai", "served-name", base_url="http://127.0.0.1:1/v1")
    assert isinstance(remote, OpenAIBackend) and remote.url == "http://127.0.0.1:1/v1/chat/completions"


def test_load_backend_rejects_unknown_names_and_serverless_defaults():
    with pytest.raises(ValueError, match="one of transformers, vllm, openai"):
        load_backend("llamacpp", "m")
    with pytest.raises(ValueError, match="needs model="):
        load_backend("openai")


def test_sampling_params_record_and_validate():
    params = SamplingParams(max_new_tokens=8, temperature=0, top_logprobs=5)
    assert params.to_dict() == dict(max_new_tokens=8, temperature=0, top_p=0.95, seed=0, top_logprobs=5)
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0)


# --------------------------------------------------------------------------------------------------
# the real embedded model
# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_transformers_on_the_embedded_model():
    from hf_cpt.modeling import embedded_model_path

    path = Path(embedded_model_path())
    conversations = [
        [{"role": "user", "content": "What is the capital of France?"}],
        [{"role": "user", "content": "Name three colours of the rainbow, please."}],
    ]
    params = SamplingParams(max_new_tokens=16, temperature=0)
    backend = TransformersBackend(path, batch_size=2, bf16=False)
    batched = backend.generate(conversations, params)
    backend.batch_size = 1
    alone = backend.generate(conversations, params)
    assert all(c.ok and c.text.strip() for c in batched)
    assert summary(batched) == summary(alone)
    assert backend.model_name == str(path)


class OutOfOrderBackend(GenerationBackend):
    """Finishes conversations last-first, as a server answering concurrent requests may; can skip one."""

    name = "out-of-order"
    model_name = "out-of-order"

    def __init__(self, skip: int | None = None) -> None:
        self.skip = skip

    def _completions(self, conversations, params):
        for index in reversed(range(len(conversations))):
            if index != self.skip:
                yield index, Completion(text=f"answer {index}", finish_reason="stop")


def test_generate_returns_completions_in_order_and_reports_each_as_it_finishes():
    seen = []
    results = OutOfOrderBackend().generate(
        [[{"role": "user", "content": str(i)}] for i in range(3)],
        SamplingParams(),
        on_result=lambda index, completion: seen.append((index, completion.text)),
    )
    assert [completion.text for completion in results] == ["answer 0", "answer 1", "answer 2"]
    assert seen == [(2, "answer 2"), (1, "answer 1"), (0, "answer 0")]


def test_a_backend_that_skips_a_conversation_is_an_error_not_a_hole():
    with pytest.raises(RuntimeError, match="no completion for conversation 1"):
        OutOfOrderBackend(skip=1).generate([[{"role": "user", "content": str(i)}] for i in range(3)], SamplingParams())

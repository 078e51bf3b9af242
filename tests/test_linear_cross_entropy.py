"""The training loss from hidden states: exact against float64 and the plain path, at a 128k vocabulary, without
full logits; and the models and settings that must take the full-logits path or fail at the first step."""

import logging
import math
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from conftest import make_model, micro_config
from transformers import CohereConfig, CohereForCausalLM, Gemma2Config, Gemma2ForCausalLM, LlamaForCausalLM

import hf_cpt.linear_cross_entropy as lce
from hf_cpt import CPTConfig, CPTTrainer
from hf_cpt.linear_cross_entropy import linear_cross_entropy, sequence_nll_from_hidden
from hf_cpt.testing import tiny_llama

LLAMA3_VOCAB = 128_256


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """Largest difference, relative to the largest reference value (gradients have entries near 0)."""
    return ((ours.double() - reference.double()).abs().max() / reference.double().abs().max()).item()


def test_one_position_by_hand():
    # logits = h * w = [0, 1, 2]; target 2: nll = log(1 + e + e^2) - 2, d nll / d h = sum_i p_i w_i - w_2.
    hidden = torch.tensor([[1.0]], requires_grad=True)
    weight = torch.tensor([[0.0], [1.0], [2.0]], requires_grad=True)
    nll = linear_cross_entropy(hidden, weight, torch.tensor([2]), chunk_size=1)
    normalizer = 1 + math.e + math.e**2
    assert nll.item() == pytest.approx(math.log(normalizer) - 2, rel=1e-6)
    nll.sum().backward()
    p = [1 / normalizer, math.e / normalizer, math.e**2 / normalizer]
    assert hidden.grad.item() == pytest.approx(p[1] + 2 * p[2] - 2, rel=1e-6)
    # d nll / d w_i = (p_i - [i == 2]) * h
    assert weight.grad.squeeze(1).tolist() == pytest.approx([p[0], p[1], p[2] - 1], rel=1e-6)


@pytest.mark.parametrize("chunk_size", [1, 8, 37, 1000])
def test_nll_and_gradients_equal_float64_autograd_for_any_upstream_gradient(chunk_size):
    torch.manual_seed(0)
    hidden = torch.randn(37, 6, requires_grad=True)
    weight = torch.randn(50, 6, requires_grad=True)
    bias = torch.randn(50, requires_grad=True)
    targets = torch.randint(0, 50, (37,))
    upstream = torch.rand(37)  # per-position weights, as a per-group or per-sequence sum gives
    nll = linear_cross_entropy(hidden, weight, targets, bias, chunk_size=chunk_size)
    (nll * upstream).sum().backward()
    leaves = [t.detach().double().requires_grad_() for t in (hidden, weight, bias)]
    reference = F.cross_entropy(F.linear(leaves[0], leaves[1], leaves[2]), targets, reduction="none")
    (reference * upstream.double()).sum().backward()
    assert nll.dtype == torch.float32
    torch.testing.assert_close(nll.double(), reference.detach(), rtol=1e-5, atol=0)
    for ours, theirs in zip((hidden, weight, bias), leaves, strict=True):
        assert relative_error(ours.grad, theirs.grad) < 1e-5


def test_bf16_autocast_computes_the_logits_as_the_models_head_does():
    torch.manual_seed(0)
    hidden = torch.randn(40, 16, requires_grad=True)
    weight = torch.randn(300, 16, requires_grad=True)
    targets = torch.randint(0, 300, (40,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference = F.cross_entropy(F.linear(hidden, weight).float(), targets, reduction="none")
        nll = linear_cross_entropy(hidden, weight, targets, chunk_size=16)
    # Same bf16 logits, so the same losses to float32 rounding (an fp32 head would differ by ~1e-2).
    torch.testing.assert_close(nll, reference, rtol=1e-6, atol=1e-5)
    (grad_hidden,) = torch.autograd.grad(reference.sum(), hidden)
    nll.sum().backward()
    torch.testing.assert_close(hidden.grad, grad_hidden, rtol=1e-6, atol=1e-6)
    assert hidden.grad.dtype == torch.float32 and weight.grad.dtype == torch.float32


def test_sequence_sums_skip_ignored_labels():
    torch.manual_seed(0)
    hidden = torch.randn(2, 5, 4)
    weight = torch.randn(11, 4)
    labels = torch.tensor([[1, 2, 3, 4, 5], [6, 7, -100, -100, -100]])
    nll, tokens = sequence_nll_from_hidden(hidden, weight, labels, chunk_size=3)
    logits = hidden @ weight.T
    token_nll = F.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), reduction="none")
    token_nll = token_nll.view(2, 4).masked_fill(labels[:, 1:] == -100, 0)
    assert tokens.tolist() == [4, 1]  # row 2 predicts only 7 (from 6)
    torch.testing.assert_close(nll, token_nll.sum(dim=1))


def llama3_vocabulary_model() -> LlamaForCausalLM:
    shape = dict(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1
    )
    return tiny_llama(LLAMA3_VOCAB, context=64, **shape)


@pytest.mark.parametrize("activation_checkpointing", [False, True])
def test_at_llama3_vocabulary_group_losses_match_float64_and_gradients_the_plain_path(
    tmp_path, activation_checkpointing
):
    model = llama3_vocabulary_model()
    if activation_checkpointing:
        model.activation_checkpointing_enable()
    model.train()
    trainer = CPTTrainer(
        model=model, args=micro_config(tmp_path, max_length=24, loss_chunk_size=16), group_names=["a", "b", "c"]
    )
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(3, LLAMA3_VOCAB, (3, 24), generator=generator)
    batch = {"input_ids": input_ids, "labels": input_ids.clone(), "group": torch.tensor([2, 0, 2])}
    head_inputs = []
    hook = model.lm_head.register_forward_hook(lambda module, args, output: head_inputs.append(args[0].shape))
    trainer.compute_loss(model, dict(batch)).backward()
    hook.remove()
    # The model computed the logits of one position per row; the loss applied the head itself, chunk by chunk.
    assert head_inputs == [torch.Size([3, 1, 16])]
    ours = {name: parameter.grad.clone() for name, parameter in model.named_parameters()}
    group_loss = trainer._window_nll / trainer._window_loss_tokens
    assert trainer._window_loss_tokens.tolist() == [23, 0, 46]

    model.zero_grad()
    model(input_ids=input_ids, labels=input_ids).loss.backward()
    for name, parameter in model.named_parameters():
        assert relative_error(ours[name], parameter.grad) < 1e-5, name

    with torch.no_grad():
        hidden = model.model(input_ids=input_ids).last_hidden_state.double()
        log_probs = torch.log_softmax(hidden[:, :-1] @ model.lm_head.weight.double().T, dim=-1)
        token_nll = -log_probs.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    reference = {0: token_nll[1].mean(), 2: token_nll[[0, 2]].mean()}
    for group, value in reference.items():
        assert abs(group_loss[group].item() - value.item()) / value.item() < 1e-5


def test_under_bf16_mixed_precision_the_head_computes_in_bf16_as_the_models_own(tmp_path):
    trainer = CPTTrainer(model=make_model(1000), args=micro_config(tmp_path, bf16=True))
    model = trainer.accelerator.prepare_model(trainer.model)  # the forward now runs under bf16 autocast
    model.train()
    input_ids = torch.randint(3, 1000, (2, 16), generator=torch.Generator().manual_seed(3))
    loss = trainer.compute_loss(model, {"input_ids": input_ids, "labels": input_ids})
    reference = model(input_ids=input_ids, labels=input_ids).loss  # bf16 logits, float32 cross-entropy
    # The same bf16 logits on both paths; a float32 head would differ from them by ~1e-3 relative.
    assert loss.item() == pytest.approx(reference.item(), rel=2e-6)


def test_evaluation_and_prediction_get_the_full_logits(tmp_path):
    model = make_model(100).eval()
    trainer = CPTTrainer(model=model, args=micro_config(tmp_path))
    input_ids = torch.randint(3, 100, (2, 12))
    loss, outputs = trainer.compute_loss(model, {"input_ids": input_ids, "labels": input_ids}, return_outputs=True)
    assert outputs.logits.shape == (2, 12, 100)
    assert loss.item() == pytest.approx(model(input_ids=input_ids, labels=input_ids).loss.item(), rel=1e-6)


def gemma2_with_softcapping() -> Gemma2ForCausalLM:
    torch.manual_seed(0)
    config = Gemma2Config(
        vocab_size=100,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        final_logit_softcapping=30.0,
    )
    return Gemma2ForCausalLM(config)


def llama_with_wrapped_head() -> LlamaForCausalLM:
    model = make_model(100)
    model.lm_head = torch.nn.Sequential(model.lm_head)
    return model


def llama_with_zero3_partitioned_head() -> LlamaForCausalLM:
    model = make_model(100)
    model.lm_head.weight.ds_shape = model.lm_head.weight.shape  # what DeepSpeed ZeRO-3 marks its partitions with
    return model


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (gemma2_with_softcapping, "it soft-caps its logits (final_logit_softcapping=30.0)"),
        (llama_with_wrapped_head, "its output embeddings are Sequential, not a torch.nn.Linear"),
        (
            llama_with_zero3_partitioned_head,
            "DeepSpeed ZeRO-3 partitions its output embeddings outside the model's forward",
        ),
    ],
)
def test_models_the_head_cannot_stand_for_train_on_their_full_logits(tmp_path, caplog, build, reason):
    model = build().train()
    trainer = CPTTrainer(model=model, args=micro_config(tmp_path))
    input_ids = torch.randint(3, 100, (2, 12))
    with caplog.at_level(logging.WARNING, logger="hf_cpt.trainer"):
        loss = trainer.compute_loss(model, {"input_ids": input_ids, "labels": input_ids})
    assert f"The loss is computed from the model's full logits: {reason}." in caplog.text
    assert loss.item() == pytest.approx(model(input_ids=input_ids, labels=input_ids).loss.item(), rel=1e-6)


def test_a_model_that_scales_its_logits_fails_at_the_first_step(tmp_path):
    torch.manual_seed(0)
    config = CohereConfig(
        vocab_size=100,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        logit_scale=0.0625,
    )
    model = CohereForCausalLM(config).train()
    trainer = CPTTrainer(model=model, args=micro_config(tmp_path))
    input_ids = torch.randint(3, 100, (2, 12))
    with pytest.raises(
        ValueError, match="CohereForCausalLM's logits are not its output embeddings .* loss_chunk_size=0"
    ):
        trainer.compute_loss(model, {"input_ids": input_ids, "labels": input_ids})
    trainer = CPTTrainer(model=model, args=micro_config(tmp_path, loss_chunk_size=0))
    loss = trainer.compute_loss(model, {"input_ids": input_ids, "labels": input_ids})
    assert loss.item() == pytest.approx(model(input_ids=input_ids, labels=input_ids).loss.item(), rel=1e-6)


class LlamaWithoutHiddenStates(LlamaForCausalLM):
    def forward(self, input_ids=None, logits_to_keep=0, **kwargs):
        outputs = super().forward(input_ids=input_ids, logits_to_keep=logits_to_keep, **kwargs)
        outputs.hidden_states = None
        return outputs


def test_a_model_that_returns_no_hidden_states_fails_at_the_first_step(tmp_path):
    model = LlamaWithoutHiddenStates(make_model(100).config).train()
    trainer = CPTTrainer(model=model, args=micro_config(tmp_path))
    input_ids = torch.randint(3, 100, (2, 12))
    with pytest.raises(ValueError, match="LlamaWithoutHiddenStates returned no last hidden state .* loss_chunk_size=0"):
        trainer.compute_loss(model, {"input_ids": input_ids, "labels": input_ids})


def test_liger_path_asks_liger_for_per_token_losses(monkeypatch):
    calls = []

    def fused_linear_cross_entropy(input, weight, target, bias=None, reduction="mean", **kwargs):
        calls.append(reduction)
        return F.cross_entropy(F.linear(input, weight, bias), target, reduction=reduction).to(torch.bfloat16)

    functional = types.ModuleType("liger_kernel.transformers.functional")
    functional.liger_fused_linear_cross_entropy = fused_linear_cross_entropy
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers.functional", functional)
    torch.manual_seed(0)
    hidden, weight = torch.randn(2, 5, 4), torch.randn(11, 4)
    labels = torch.randint(0, 11, (2, 5))
    nll, tokens = sequence_nll_from_hidden(hidden, weight, labels, use_liger=True)
    expected, _ = sequence_nll_from_hidden(hidden, weight, labels)
    assert calls == ["none"] and nll.dtype == torch.float32 and tokens.tolist() == [4, 4]
    torch.testing.assert_close(nll, expected, rtol=1e-2, atol=0)


def test_settings_fail_with_one_sentence(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="loss_chunk_size is -1; set it to positions per chunk"):
        CPTConfig(output_dir=str(tmp_path), loss_chunk_size=-1)
    monkeypatch.setattr(lce, "liger_version", lambda: None)
    with pytest.raises(
        ImportError, match=r"liger-kernel is not installed; install it with `pip install \"hf-cpt\[liger\]\"` \(0.8.2"
    ):
        CPTConfig(output_dir=str(tmp_path), use_liger_kernel=True)
    monkeypatch.setattr(lce, "liger_version", lambda: (0, 8, 1))
    with pytest.raises(ImportError, match=r"liger-kernel 0\.8\.1 is older than 0\.8\.2"):
        CPTConfig(output_dir=str(tmp_path), use_liger_kernel=True)


def test_validation_perplexity_by_group_needs_no_full_logits_and_equals_the_full_logits_path():
    from datasets import Dataset

    from hf_cpt.perplexity import perplexity_by_group

    model = llama3_vocabulary_model()
    generator = torch.Generator().manual_seed(2)
    documents = [torch.randint(3, LLAMA3_VOCAB, (length,), generator=generator).tolist() for length in (9, 20, 14)]
    dataset = Dataset.from_dict({"input_ids": documents, "group": [1, 0, 1]})
    head_inputs = []
    hook = model.lm_head.register_forward_hook(lambda module, args, output: head_inputs.append(args[0].shape[1]))
    chunked = perplexity_by_group(model, dataset, ["a", "b"], batch_size=2, chunk_size=8)
    hook.remove()
    assert head_inputs == [1, 1]  # one position per batch, for the check against the model's own logits
    full = perplexity_by_group(model, dataset, ["a", "b"], batch_size=2, chunk_size=None)
    assert {name: row["tokens"] for name, row in chunked.items()} == {"a": 19, "b": 21}
    for name in ("a", "b"):
        assert chunked[name]["nll"] == pytest.approx(full[name]["nll"], rel=1e-6)

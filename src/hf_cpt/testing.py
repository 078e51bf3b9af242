"""Tiny models and tokenizers for tests and benchmarks, and a tiny stand-in for the embedded default model.

`tiny_llama(vocab_size)` is a randomly initialised Llama (hidden 64, 2 layers) and `word_tokenizer(words)` a
whitespace word-level tokenizer whose special ids match it; tests and `benchmarks/` build their models with them.

The examples of the README and of `docs/` use the embedded default, SmolLM2-135M-Instruct, through
`hf_cpt.modeling.embedded_model_path()`. `write_tiny_embedded_model(cache)` puts a tiny Llama with SmolLM2's
tokenizer and context where that function looks under `cache`; with `HF_CPT_CACHE=<cache>` every example then
runs unchanged on the tiny model (its numbers mean nothing). The tiny model is random except that it predicts
its end-of-text token after any input, so generation stops at once instead of sampling hundreds of tokens over
a 49k vocabulary. The docs' test runs every example this way. From the shell:

    python -m hf_cpt.testing tiny-cache && HF_CPT_CACHE=tiny-cache python my_example.py
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import AutoConfig, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from hf_cpt.modeling import EMBEDDED_GGUF, EMBEDDED_MODEL_NAME, embedded_package_dir

#: The tiny model's shape (the tokenizer's vocabulary and the context stay SmolLM2's).
TINY_SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "tie_word_embeddings": False,
}
#: The special tokens of `word_tokenizer`, ids 0, 1 and 2: the padding and end-of-text ids of `tiny_llama`.
WORD_SPECIALS = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
#: BERT's special tokens, for the tokenizer of a tiny encoder: each text becomes `[CLS] text [SEP]`.
BERT_SPECIALS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]"}


def tiny_llama(vocab_size: int, *, seed: int = 0, context: int = 256, **config: Any) -> LlamaForCausalLM:
    """A randomly initialised Llama of `TINY_SHAPE` (seeded), with `word_tokenizer`'s padding and end-of-text ids.

    `context` is its `max_position_embeddings`; `config` overrides any other `LlamaConfig` field (a larger
    `hidden_size` for a benchmark, say).
    """
    torch.manual_seed(seed)
    values = {**TINY_SHAPE, "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 1, **config}
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, max_position_embeddings=context, **values))


def word_tokenizer(words: Sequence[str], special_tokens: Mapping[str, str] = WORD_SPECIALS) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer: the `special_tokens` take the first ids, in order, then `words`.

    A word not in `words` becomes the unknown token. With a `cls_token` and a `sep_token` (`BERT_SPECIALS`) each
    text is wrapped as `[CLS] text [SEP]`, as a BERT tokenizer does.
    """
    vocab = {token: i for i, token in enumerate([*special_tokens.values(), *words])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=special_tokens["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    if "cls_token" in special_tokens and "sep_token" in special_tokens:
        cls, sep = special_tokens["cls_token"], special_tokens["sep_token"]
        backend.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}", special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])]
        )
    return PreTrainedTokenizerFast(tokenizer_object=backend, **special_tokens)


#: The end-of-text logit of the tiny model, about this much above all others (which are 0): greedy and
#: sampled decoding both end at once, while the perplexity of other tokens (~e^31) stays finite in float32.
EOS_MARGIN = 20.0


def write_tiny_embedded_model(cache: str | Path, seed: int = 0) -> Path:
    """Write the tiny stand-in into `<cache>/models/SmolLM2-135M-Instruct` (once) and return that folder.

    Reads the tokenizer and configuration from the embedded default's GGUF file, so it works whatever
    `HF_CPT_CACHE` says at the time.
    """
    target = Path(cache) / "models" / EMBEDDED_MODEL_NAME
    if (target / "model.safetensors").is_file():
        return target
    package_dir = embedded_package_dir()
    tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=EMBEDDED_GGUF)
    config = AutoConfig.from_pretrained(package_dir, gguf_file=EMBEDDED_GGUF).to_dict()
    config.pop("quantization_config", None)
    config.update(TINY_SHAPE, head_dim=TINY_SHAPE["hidden_size"] // TINY_SHAPE["num_attention_heads"])
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig.from_dict(config))
    _predict_end_of_text(model, tokenizer.eos_token_id)
    staging = target.with_name(target.name + ".partial")
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    staging.rename(target)
    return target


@torch.no_grad()
def _predict_end_of_text(model: LlamaForCausalLM, eos_token_id: int) -> None:
    """Make the end-of-text token the model's prediction after any input.

    Dimension 0 of the residual stream is 1 for every token embedding and no layer writes to it, so after
    the final RMSNorm it is positive (about sqrt(hidden_size) / ||h||, ~8 here); the output head reads only
    that dimension, and only for the end-of-text token.
    """
    model.model.embed_tokens.weight[:, 0] = 1.0
    for layer in model.model.layers:
        layer.self_attn.o_proj.weight[0] = 0.0
        layer.mlp.down_proj.weight[0] = 0.0
    head = model.lm_head.weight
    head.zero_()
    head[eos_token_id, 0] = EOS_MARGIN / 8


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m hf_cpt.testing CACHE_DIR")
    print(write_tiny_embedded_model(sys.argv[1]))

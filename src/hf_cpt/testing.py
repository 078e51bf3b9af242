"""A tiny stand-in for the embedded default model, so that examples run in seconds.

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
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from hf_cpt.modeling import EMBEDDED_GGUF, EMBEDDED_MODEL_NAME, embedded_package_dir

#: The tiny model's shape (the tokenizer's vocabulary and the context stay SmolLM2's).
TINY_SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "tie_word_embeddings": False,
}
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
    config.update(TINY_SHAPE)
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

"""The GPU checks behind `benchmarks/gpu/run.sh`, one sub-command per part; each writes `<out>/parts/<name>.json`.

- `attention`: is FlashAttention 2 importable, which kernel `CPTTrainer` picks, and does it agree with sdpa;
- `throughput`: tokens/s, MFU and peak memory of a ~1B Llama (TinyLlama's config, random weights, bf16 mixed
  precision, context 2,048) under `CPTTrainer` and a plain `Trainer`, with and without Liger-Kernel and
  `torch_compile` (each variant in its own process, as long as the time budget lasts);
- `distributed-step`: two `CPTTrainer` steps under an accelerate config of `recipes/accelerate_configs/` (run it
  with `accelerate launch --config_file ...`): the first loss must match the model's own loss on that batch;
- `generation`: output tokens/s of a synthetic-QA backend (`transformers` or `vllm`) on the same SynthQA prompts,
  a random-weight TinyLlama-config model and a tokenizer trained here;
- `labeling`: `label_topics` documents/s on the GPU (random MiniLM-sized BERT, a WordPiece vocabulary trained here);
- `report`: merges the parts into `gpu_results.json` and `gpu_results.md`.

Nothing comes from the Hub: models are random weights from configs, tokenizers are trained on the bundled demo
corpus. A part whose package is missing writes `status: skipped` with the reason. `--dry-run` runs a part's wiring
on the CPU in seconds (micro models, a step or a few tokens); `dry-run` does that for every part in one process.

    python benchmarks/gpu/checks.py PART [--out DIR] [--dry-run] [part options]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[2]
ACCELERATE_CONFIGS = REPOSITORY / "recipes" / "accelerate_configs"
DISTRIBUTED_CONFIGS = {"deepspeed-zero2": "deepspeed_zero2.yaml", "fsdp": "fsdp.yaml"}
PARTS = ("attention", "throughput", "distributed-step", "labeling", "generation")
THROUGHPUT_VARIANTS = tuple(
    f"{trainer}{'+liger' if liger else ''}{'+compile' if compiled else ''}"
    for compiled in (False, True)
    for liger in (False, True)
    for trainer in ("plain", "cpt")
)
# Dense bf16 peak FLOP/s by device name (NVIDIA data sheets; SXM parts).
PEAK_BF16_FLOPS = {"H200": 989.4e12, "H100 PCIe": 756.0e12, "H100": 989.4e12, "A100": 312.0e12}
GROUPS = ["web-en/Mathematics and Physics", "book-en"]


# ---- shared pieces ----
def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def write_part(out: Path, name: str, result: dict[str, Any]) -> dict[str, Any]:
    """Record one part's result (status ok / skipped / failed, and its figures) under `out/parts/`."""
    result = {"part": name, **result}
    (out / "parts").mkdir(parents=True, exist_ok=True)
    (out / "parts" / f"{name}.json").write_text(json.dumps(result, indent=2))
    line = result.get("reason") or ", ".join(f"{k}={v}" for k, v in result.items() if k not in ("part", "rows"))
    print(f"[{name}] {result['status']}: {line}", flush=True)
    return result


def skipped(reason: str) -> dict[str, Any]:
    return {"status": "skipped", "reason": reason}


def demo_texts() -> list[str]:
    from hf_cpt.data import DEMO_CORPUS_PATH, load_source

    texts: list[str] = []
    for source in ("web-en", "book-en", "encyclopedia-en", "paper-en", "math-en", "code-en"):
        texts += load_source(DEMO_CORPUS_PATH, source, "train")["text"]
    return texts


CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def local_chat_tokenizer(directory: Path, vocab_size: int = 8192):
    """A byte-level BPE tokenizer with a ChatML template, trained on the bundled demo corpus (no Hub)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(demo_texts(), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(directory)
    return tokenizer


def local_wordpiece_tokenizer(directory: Path, vocab_size: int = 8000):
    """A BERT WordPiece tokenizer trained on the bundled demo corpus (no Hub)."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    backend = BertWordPieceTokenizer(lowercase=True)
    backend.train_from_iterator(demo_texts(), vocab_size=vocab_size)
    directory.mkdir(parents=True, exist_ok=True)
    backend.save_model(str(directory))
    tokenizer = BertTokenizerFast(vocab_file=str(directory / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(directory)
    return tokenizer


def llama_config(vocab_size: int, micro: bool, max_length: int = 2048):
    """TinyLlama-1.1B's architecture (or, for a dry run, a micro Llama)."""
    from transformers import LlamaConfig

    if micro:
        sizes = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
        sizes["num_key_value_heads"] = 2
    else:
        sizes = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32)
        sizes["num_key_value_heads"] = 4
    return LlamaConfig(vocab_size=vocab_size, max_position_embeddings=max_length, rms_norm_eps=1e-5, **sizes)


def flops_per_token(model: torch.nn.Module, config, context: int) -> float:
    """Training FLOPs per token: 6 x matmul parameters (all but the input embeddings) + 12 x layers x hidden x
    context for attention scores and values (the convention of PaLM, torchtitan and Megatron)."""
    matmul_parameters = sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name)
    return 6 * matmul_parameters + 12 * config.num_hidden_layers * config.hidden_size * context


def peak_flops(device_name: str) -> float | None:
    for key, value in PEAK_BF16_FLOPS.items():
        if key in device_name:
            return value
    return None


def device_description() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    return f"{platform.machine()} CPU, {os.cpu_count()} cores (torch {torch.__version__})"


def random_blocks(rows: int, length: int, vocab_size: int, seed: int = 0):
    from datasets import ClassLabel, Dataset

    rng = np.random.default_rng(seed)
    data = Dataset.from_dict(
        {
            "input_ids": rng.integers(3, vocab_size, size=(rows, length)).tolist(),
            "group": (np.arange(rows) % 2).tolist(),
        }
    )
    return data.cast_column("group", ClassLabel(names=GROUPS))


# ---- attention ----
def attention(options: argparse.Namespace) -> dict[str, Any]:
    from transformers import LlamaForCausalLM

    from hf_cpt.modeling import default_attn_implementation, load_causal_lm

    installed = package_version("flash-attn")
    result: dict[str, Any] = {"flash_attn": installed, "device": device_description()}
    importable = importlib.util.find_spec("flash_attn") is not None
    if importable:
        import flash_attn  # noqa: F401  (the import itself is the check)
    chosen = default_attn_implementation()
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        LlamaForCausalLM(llama_config(512, micro=True)).save_pretrained(folder)
        loaded = load_causal_lm(folder).config._attn_implementation
    result.update(default_attn_implementation=chosen, cpt_trainer_loads_with=loaded)
    if loaded != chosen:
        return {**result, "status": "failed", "reason": f"load_causal_lm used {loaded}, not {chosen}"}
    if not torch.cuda.is_available():
        return {**result, "status": "ok" if options.dry_run else "skipped", "reason": "no CUDA GPU: path is sdpa"}
    if not importable:
        return {
            **result,
            **skipped("flash-attn is not installed (no wheel for this torch / CUDA); CPTTrainer uses sdpa"),
        }
    # Same weights under both kernels: outputs agree to bf16 rounding; forward time at 2 x 2,048 tokens.
    config = llama_config(32000, micro=False)
    config.num_hidden_layers = 4
    times, logits = {}, {}
    input_ids = torch.randint(3, 32000, (2, 2048), device="cuda")
    for kernel in ("sdpa", "flash_attention_2"):
        torch.manual_seed(0)
        config._attn_implementation = kernel
        model = LlamaForCausalLM(config).to("cuda", torch.bfloat16).eval()
        with torch.no_grad():
            for _ in range(3):
                model(input_ids=input_ids)
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(10):
                logits[kernel] = model(input_ids=input_ids).logits.float()
            torch.cuda.synchronize()
        times[kernel] = (time.perf_counter() - start) / 10
        del model
    difference = (logits["sdpa"] - logits["flash_attention_2"]).abs().max().item()
    result.update(
        max_logit_difference=round(difference, 4),
        forward_ms_sdpa=round(times["sdpa"] * 1e3, 2),
        forward_ms_flash=round(times["flash_attention_2"] * 1e3, 2),
    )
    ok = chosen == "flash_attention_2" and difference < 0.1 * logits["sdpa"].abs().max().item()
    return {**result, "status": "ok" if ok else "failed"}


# ---- training throughput ----
class StepTimer(TrainerCallback):
    """Synchronised step times after `warmup` steps; resets the peak GPU memory when the warm-up ends."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.times: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if state.global_step > self.warmup:
            self.times.append(time.perf_counter() - self._start)
        elif state.global_step == self.warmup and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()


def training_arguments(output_dir: str, steps: int, batch: int, **extra: Any) -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    return dict(
        output_dir=output_dir, max_steps=steps, per_device_train_batch_size=batch, bf16=cuda, use_cpu=not cuda,
        report_to="none", save_strategy="no", logging_steps=1, learning_rate=1e-4, lr_scheduler_type="constant",
        remove_unused_columns=False, disable_tqdm=True, dataloader_num_workers=0, seed=0, **extra,
    )  # fmt: skip


def throughput_variant(variant: str, options: argparse.Namespace) -> dict[str, Any]:
    """One trainer / Liger / compile combination, in this process."""
    from transformers import LlamaForCausalLM, Trainer, TrainingArguments

    from hf_cpt import CPTConfig, CPTTrainer
    from hf_cpt.linear_cross_entropy import check_liger_kernel
    from hf_cpt.trainer import collate_blocks

    liger, compiled = "+liger" in variant, "+compile" in variant
    if liger:
        try:
            check_liger_kernel()
        except ImportError as error:
            return skipped(str(error))
        if not torch.cuda.is_available():
            return skipped("Liger-Kernel's Triton kernels need a CUDA GPU")
    micro = options.dry_run
    length = 32 if micro else options.max_length
    config = llama_config(512 if micro else 32000, micro=micro, max_length=length)
    steps = 1 + 1 if micro else options.warmup + options.steps
    data = random_blocks(steps * options.batch, length, config.vocab_size)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    timer = StepTimer(1 if micro else options.warmup)
    with tempfile.TemporaryDirectory() as output_dir:
        common = training_arguments(output_dir, steps, options.batch, use_liger_kernel=liger, torch_compile=compiled)
        if variant.startswith("plain"):
            args = TrainingArguments(**common)
            trainer = Trainer(
                model=model, args=args, train_dataset=data.remove_columns("group"), data_collator=collate_blocks
            )
        else:
            args = CPTConfig(**common, max_length=length, activation_checkpointing=False)
            trainer = CPTTrainer(model=model, args=args, train_dataset=data)
        trainer.add_callback(timer)
        trainer.train()
    step = statistics.median(timer.times)
    tokens_per_second = options.batch * length / step
    result = {"status": "ok", "step_s": round(step, 4), "tokens_per_s": round(tokens_per_second)}
    peak = peak_flops(torch.cuda.get_device_name()) if torch.cuda.is_available() else None
    if peak:
        result["mfu"] = round(tokens_per_second * flops_per_token(model, config, length) / peak, 4)
        result["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    result["last_loss"] = round(float(losses[-1]), 4) if losses else None
    if not variant.startswith("plain"):
        logged = [key for entry in trainer.state.log_history for key in entry if key.startswith("loss/")]
        result["per_group_loss_logged"] = sorted(set(logged)) == sorted(f"loss/{name}" for name in GROUPS)
    return result


def throughput(options: argparse.Namespace) -> dict[str, Any]:
    """Every variant in a fresh process (CUDA memory, compile caches), in order, while the time budget lasts."""
    variants = options.variants.split(",") if options.variants else list(THROUGHPUT_VARIANTS)
    unknown = [variant for variant in variants if variant not in THROUGHPUT_VARIANTS]
    if unknown:
        raise SystemExit(f"--variants names {unknown[0]!r}; use some of {', '.join(THROUGHPUT_VARIANTS)}.")
    if options.variant:
        return throughput_variant(options.variant, options)
    if options.dry_run:  # micro models on the CPU: nothing to isolate, so in this process
        compiling = skipped("dry run: compiling takes minutes on a CPU (tests/test_compile.py covers it)")
        rows = [{"variant": v, **(compiling if "+compile" in v else throughput_variant(v, options))} for v in variants]
        return {"status": "ok", "rows": rows}
    if not torch.cuda.is_available():
        return skipped("no CUDA GPU")
    deadline = time.monotonic() + options.budget_s
    rows = []
    for variant in variants:
        remaining = deadline - time.monotonic()
        if remaining < 20:
            rows.append({"variant": variant, **skipped(f"time budget of {options.budget_s:.0f} s spent")})
            continue
        command = [sys.executable, __file__, "throughput", "--variant", variant, "--out", str(options.out)]
        command += [f"--max-length={options.max_length}", f"--batch={options.batch}"]
        command += [f"--warmup={options.warmup}", f"--steps={options.steps}"] + (
            ["--dry-run"] if options.dry_run else []
        )
        try:
            finished = subprocess.run(command, capture_output=True, text=True, timeout=remaining, check=False)
        except subprocess.TimeoutExpired:
            rows.append({"variant": variant, **skipped(f"did not finish within the remaining {remaining:.0f} s")})
            continue
        if finished.returncode != 0:
            rows.append({"variant": variant, "status": "failed", "reason": finished.stderr.strip()[-600:]})
            continue
        rows.append({"variant": variant, **json.loads(finished.stdout.strip().splitlines()[-1])})
        print(f"[throughput] {rows[-1]}", flush=True)
    status = "ok" if any(row["status"] == "ok" for row in rows) else "failed"
    if any(row["status"] == "failed" for row in rows):
        status = "failed"
    setting = f"TinyLlama-1.1B config, random weights, bf16, context {options.max_length}, batch {options.batch}"
    return {"status": status, "setting": setting, "rows": rows}


# ---- one DeepSpeed / FSDP step ----
def distributed_step(options: argparse.Namespace) -> dict[str, Any]:
    """Two CPTTrainer steps under whatever `accelerate launch` set up; the first loss must be the model's own."""
    from accelerate.commands.config.config_args import load_config_from_file
    from torch.utils.data import SequentialSampler
    from transformers import LlamaForCausalLM

    from hf_cpt import CPTConfig, CPTTrainer
    from hf_cpt.trainer import collate_blocks

    config_file = ACCELERATE_CONFIGS / DISTRIBUTED_CONFIGS[options.config]
    parsed = load_config_from_file(str(config_file))  # the file the launcher read, parsed as accelerate does
    result: dict[str, Any] = {"config": config_file.name, "distributed_type": str(parsed.distributed_type)}
    if options.config == "deepspeed-zero2" and importlib.util.find_spec("deepspeed") is None and not options.dry_run:
        return {**result, **skipped("deepspeed is not installed")}
    micro = options.dry_run
    length = 32 if micro else 2048
    config = llama_config(512 if micro else 128_256, micro=micro, max_length=length)
    if not micro:  # a small Llama with Llama-3's vocabulary: the loss path is what this step checks
        config.hidden_size, config.intermediate_size, config.num_hidden_layers = 512, 1408, 4
        config.num_attention_heads, config.num_key_value_heads = 8, 4
    data = random_blocks(4, length, config.vocab_size)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    batch = collate_blocks([data[i] for i in range(2)])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
        reference = model.to(device)(input_ids=batch["input_ids"].to(device), labels=batch["labels"].to(device)).loss
    with tempfile.TemporaryDirectory() as output_dir:
        args = CPTConfig(**training_arguments(output_dir, 2, 2), max_length=length, activation_checkpointing=True)
        trainer = CPTTrainer(model=model, args=args, train_dataset=data, train_sampler=SequentialSampler(data))
        trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    first = float(logs[0]["loss"])
    groups = sorted(key for key in logs[0] if key.startswith("loss/"))
    result.update(
        world_size=trainer.args.world_size,
        accelerate_distributed_type=str(trainer.accelerator.distributed_type),
        first_loss=round(first, 4),
        reference_loss=round(reference.item(), 4),
        per_group_loss_logged=groups == sorted(f"loss/{name}" for name in GROUPS),
    )
    agrees = math.isfinite(first) and abs(first - reference.item()) <= 0.02 * reference.item()
    return {**result, "status": "ok" if agrees and result["per_group_loss_logged"] else "failed"}


# ---- synthetic QA generation ----
def generation(options: argparse.Namespace) -> dict[str, Any]:
    import datasets
    from transformers import LlamaForCausalLM

    from hf_cpt.data import demo_snippets_path
    from hf_cpt.generation import SamplingParams, load_backend
    from hf_cpt.synth.prompts import scientific_qa_messages

    if options.backend == "vllm" and importlib.util.find_spec("vllm") is None:
        return skipped("vllm is not installed (pip install vllm)")
    if options.backend == "vllm" and not torch.cuda.is_available():
        return skipped("vLLM needs a CUDA GPU")
    micro = options.dry_run
    model_dir = Path(options.out) / "work" / ("micro-llm" if micro else "tinyllama-random")
    if not (model_dir / "config.json").is_file():
        tokenizer = local_chat_tokenizer(model_dir, vocab_size=2048 if micro else 8192)
        config = llama_config(len(tokenizer), micro=micro, max_length=4096)
        config.eos_token_id = tokenizer.eos_token_id
        config.pad_token_id = tokenizer.pad_token_id
        torch.manual_seed(0)
        LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(model_dir)
    snippets = datasets.load_dataset("json", data_files=demo_snippets_path(), split="train")
    count = 2 if micro else options.prompts
    chats = [scientific_qa_messages(snippets[i % len(snippets)]["text"], snippets[i % len(snippets)]["discipline"])
             for i in range(count)]  # fmt: skip
    params = SamplingParams(max_new_tokens=4 if micro else options.max_new_tokens, temperature=0.0)
    if options.backend == "vllm":
        backend = load_backend("vllm", str(model_dir), dtype="bfloat16", seed=0, gpu_memory_utilization=0.6)
    else:
        backend = load_backend("transformers", str(model_dir), batch_size=options.batch_size)
    backend.generate(chats[:2], SamplingParams(max_new_tokens=4, temperature=0.0))  # warm-up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    completions = backend.generate(chats, params)
    seconds = time.perf_counter() - start
    failures = [c.error for c in completions if c.error]
    if failures:
        return {"status": "failed", "reason": failures[0]}
    tokens = sum(c.completion_tokens for c in completions)
    return {
        "status": "ok",
        "backend": options.backend,
        "prompts": count,
        "output_tokens": tokens,
        "seconds": round(seconds, 2),
        "output_tokens_per_s": round(tokens / seconds, 1),
    }


# ---- topic labeling ----
def labeling(options: argparse.Namespace) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import BertConfig, BertForSequenceClassification

    from hf_cpt.topics.labeling import label_topics
    from hf_cpt.topics.taxonomy import ENGLISH

    sys.path.insert(0, str(REPOSITORY / "benchmarks"))
    from labeling import mixed_length_documents

    micro = options.dry_run
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = local_wordpiece_tokenizer(Path(folder) / "tokenizer", vocab_size=2000 if micro else 8000)
        sizes = (
            dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
            if micro  # all-MiniLM-L6-v2's shape otherwise
            else dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
        )
        config = BertConfig(
            vocab_size=len(tokenizer), num_labels=len(ENGLISH), id2label=dict(enumerate(ENGLISH.topics)), **sizes
        )
        torch.manual_seed(0)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = BertForSequenceClassification(config).to(device).eval()
        documents = Dataset.from_dict({"text": mixed_length_documents(20 if micro else options.documents)})
        times = []
        for repeat in range(1 if micro else 1 + options.repeats):  # the first is a warm-up
            with tempfile.TemporaryDirectory() as output_dir:
                start = time.perf_counter()
                labelled = label_topics(
                    documents, model, tokenizer=tokenizer, batch_size=options.batch_size, output_dir=output_dir,
                    bf16=device == "cuda", show_progress=False,
                )  # fmt: skip
                if repeat or micro:
                    times.append(time.perf_counter() - start)
    assert len(labelled) == len(documents) and set(labelled["topic"]) <= set(ENGLISH.topics)
    return {
        "status": "ok",
        "documents": len(documents),
        "batch_size": options.batch_size,
        "docs_per_s": round(len(documents) / statistics.median(times), 1),
    }


# ---- report ----
def expected_results(parts: list[str]) -> list[str]:
    """The result names the given parts write: one per accelerate config, one per generation backend."""
    names = []
    for part in parts:
        if part == "distributed-step":
            names += [f"{part}-{key}" for key in DISTRIBUTED_CONFIGS]
        elif part == "generation":
            names += [f"{part}-{key}" for key in ("transformers", "vllm")]
        else:
            names.append(part)
    return names


def report(options: argparse.Namespace) -> dict[str, Any]:
    """gpu_results.json and gpu_results.md from the parts' results; a part with none is listed as such."""
    out = Path(options.out)
    parts = {}
    for name in expected_results(options.parts.split(",")):
        path = out / "parts" / f"{name}.json"
        parts[name] = (
            json.loads(path.read_text())
            if path.is_file()
            else {"status": "failed", "reason": "no result: stopped at its time limit, or it did not start"}
        )
    results = {"device": device_description(), "dry_run": options.dry_run, "parts": parts}
    (out / "gpu_results.json").write_text(json.dumps(results, indent=2))
    lines = [f"GPU checks on {results['device']}" + (" (dry run: wiring only)" if options.dry_run else ""), ""]
    lines += ["| part | status | figures |", "|---|---|---|"]
    for name, part in parts.items():
        if "rows" in part:
            for row in part["rows"]:
                figures = row.get("reason") or ", ".join(
                    f"{k} {v}" for k, v in row.items() if k not in ("variant", "status")
                )
                lines.append(f"| {name}: {row['variant']} | {row['status']} | {figures} |")
            continue
        figures = part.get("reason") or ", ".join(f"{k} {v}" for k, v in part.items() if k not in ("part", "status"))
        lines.append(f"| {name} | {part['status']} | {figures} |")
    (out / "gpu_results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return {"status": "ok"}


def dry_run(options: argparse.Namespace) -> dict[str, Any]:
    """Every part's wiring, in this process, on the CPU (what `run.sh --dry-run` runs)."""
    unknown = [name for name in options.parts.split(",") if name not in PARTS]
    if unknown:
        raise SystemExit(f"--parts names {unknown[0]!r}; use some of {', '.join(PARTS)}.")
    for name in expected_results(options.parts.split(",")):
        if name.startswith("distributed-step-"):
            overrides = {"config": name.removeprefix("distributed-step-")}
            run = distributed_step
        elif name.startswith("generation-"):
            overrides = {"backend": name.removeprefix("generation-")}
            run = generation
        else:
            overrides, run = {}, COMMANDS[name]
        write_part(Path(options.out), name, guarded(run, argparse.Namespace(**{**vars(options), **overrides})))
    return report(options)


def guarded(run: Callable, options: argparse.Namespace) -> dict[str, Any]:
    try:
        return run(options)
    except Exception as error:  # one failing part must not hide the others' results
        return {"status": "failed", "reason": f"{type(error).__name__}: {error}"[:600]}


COMMANDS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "attention": attention,
    "throughput": throughput,
    "distributed-step": distributed_step,
    "generation": generation,
    "labeling": labeling,
    "report": report,
    "dry-run": dry_run,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=list(COMMANDS))
    parser.add_argument("--out", type=Path, default=Path("gpu_results"))
    parser.add_argument("--dry-run", action="store_true", help="check the wiring on the CPU with micro models")
    parser.add_argument("--name", help="file name of this part's result (default: the part)")
    parser.add_argument("--parts", default=",".join(PARTS), help="dry-run: the parts to check")
    parser.add_argument("--variants", help=f"throughput: some of {','.join(THROUGHPUT_VARIANTS)} (default: all)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # one variant, in this process
    parser.add_argument("--budget-s", type=float, default=300, help="throughput: seconds for all variants")
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=8, help="throughput: blocks per step")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--config", choices=list(DISTRIBUTED_CONFIGS), default="deepspeed-zero2")
    parser.add_argument("--backend", choices=["transformers", "vllm"], default="transformers")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32, help="generation and labeling batch size")
    parser.add_argument("--documents", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args(argv)
    options.out.mkdir(parents=True, exist_ok=True)
    if options.part in ("report", "dry-run"):
        COMMANDS[options.part](options)
        return
    result = guarded(COMMANDS[options.part], options)
    if options.variant:  # a throughput worker: its result goes to the parent on stdout
        print(json.dumps(result))
        return
    if int(os.environ.get("RANK", "0")) == 0:
        write_part(options.out, options.name or options.part, result)


if __name__ == "__main__":
    main()

"""Shared fixtures: a tiny word-level tokenizer, tiny Llama models (`hf_cpt.testing`), and a local corpus
laid out like `survivi/Llama-3-SynE-Dataset` (`data/<source>/{train,validation}.jsonl`).

Every source (and every topic of a web source) writes words from its own vocabulary slice, so a
test can tell from the token ids alone which group a block came from.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402

from hf_cpt import CPTConfig, CPTTrainer  # noqa: E402
from hf_cpt.testing import tiny_llama, word_tokenizer  # noqa: E402

WORDS_PER_GROUP = 40

# Group -> (source, topic or None, train documents, validation documents).
CORPUS_LAYOUT = {
    "web-en/Law and Policy": ("web-en", "Law and Policy", 12, 2),
    "web-en/Medicine and Health": ("web-en", "Medicine and Health", 12, 2),
    "book-en": ("book-en", None, 10, 2),
    "web-cn/Philosophy": ("web-cn", "Philosophy", 10, 2),
    "synthesis-en": ("synthesis-en", None, 10, 2),
}


def group_vocabulary(group_index: int) -> list[str]:
    return [f"g{group_index}w{i}" for i in range(WORDS_PER_GROUP)]


def make_tokenizer(directory: Path, with_eos: bool = True) -> PreTrainedTokenizerFast:
    """The corpus's word-level tokenizer, saved in `directory`; `with_eos=False` leaves its end-of-text token unset."""
    tokenizer = word_tokenizer([w for index in range(len(CORPUS_LAYOUT)) for w in group_vocabulary(index)])
    if not with_eos:
        tokenizer.eos_token = None
    tokenizer.save_pretrained(directory)
    return tokenizer


def make_model(vocab_size: int, seed: int = 0, context: int = 256) -> LlamaForCausalLM:
    return tiny_llama(vocab_size, seed=seed, context=context)


def micro_config(output_dir: Path | str, **overrides) -> CPTConfig:
    """A CPTConfig for tiny CPU runs: 32-token blocks, batches of 4, fp32, nothing reported or saved."""
    values = dict(
        output_dir=str(output_dir),
        max_length=32,
        per_device_train_batch_size=4,
        bf16=False,
        use_cpu=True,
        report_to="none",
        logging_steps=2,
        save_strategy="no",
        seed=0,
        activation_checkpointing=False,
        learning_rate=1e-3,
    )
    values.update(overrides)
    return CPTConfig(**values)


class RecordingTrainer(CPTTrainer):
    """Records the blocks of every training batch, in order."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[list[int]] = []

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            self.seen.extend(inputs["input_ids"].tolist())
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def write_corpus(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for index, (source, topic, n_train, n_validation) in enumerate(CORPUS_LAYOUT.values()):
        folder = root / "data" / source
        folder.mkdir(parents=True, exist_ok=True)
        vocabulary = group_vocabulary(index)
        for split, count in (("train", n_train), ("validation", n_validation)):
            with open(folder / f"{split}.jsonl", "a", encoding="utf-8") as file:
                for _ in range(count):
                    length = int(rng.integers(25, 60))
                    row = {"text": " ".join(rng.choice(vocabulary, size=length))}
                    if topic is not None:
                        row["topic"] = topic
                    file.write(json.dumps(row) + "\n")
        # One document under 20 tokens per source: loading must drop it.
        with open(folder / "train.jsonl", "a", encoding="utf-8") as file:
            row = {"text": " ".join(vocabulary[:5])}
            if topic is not None:
                row["topic"] = topic
            file.write(json.dumps(row) + "\n")
    return root


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory) -> PreTrainedTokenizerFast:
    return make_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def corpus_path(tmp_path_factory) -> str:
    return str(write_corpus(tmp_path_factory.mktemp("corpus")))


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory, tokenizer) -> str:
    """A saved tiny model with its tokenizer, laid out like a Hub model repo."""
    directory = tmp_path_factory.mktemp("tiny-llama")
    make_model(len(tokenizer)).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_two_processes(
    worker: Path, *args: str, accelerate_config: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run `worker` as two CPU processes on loopback, under torchrun or, given `accelerate_config`, under
    `accelerate launch` with that config file; with `env` added to the environment. Fails with the workers'
    stderr if they fail, else returns the finished process (its stderr holds the workers' logs)."""
    port = str(free_port())
    if accelerate_config is None:
        launcher = [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", port,
        ]  # fmt: skip
    else:
        launcher = [
            sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config),
            "--main_process_port", port,
        ]  # fmt: skip
    result = subprocess.run(
        [*launcher, str(worker), *args], capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})}
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def wordnet_or_skip(data_root: Path):
    """WordNet's reader over a copy in `data_root`; the test is skipped, with the install advice, when the
    database (or nltk) is missing, unless `HF_CPT_REQUIRE_WORDNET=1` (CI) makes that a failure."""
    from hf_cpt.synth.wordnet import load_wordnet

    try:
        return load_wordnet(data_root)
    except (FileNotFoundError, ImportError) as error:
        if os.environ.get("HF_CPT_REQUIRE_WORDNET") == "1":
            raise
        pytest.skip(f"{error} (scripts/install_wordnet.sh installs it as root)")

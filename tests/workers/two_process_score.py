"""Worker for the two-process scoring test: score_perplexity under torchrun (gloo, world size 2).

Each rank scores its own shards into a shared folder and writes the whole array it read back and the
number of forward passes it ran.
"""

import json
import sys
from pathlib import Path

import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import make_model  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from hf_cpt.curriculum import score_perplexity  # noqa: E402


def main(folder: Path) -> None:
    dist.init_process_group("gloo")
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    texts = json.loads((folder / "texts.json").read_text())
    model = make_model(len(tokenizer), context=32)
    forwards = []
    model.register_forward_pre_hook(lambda module, args: forwards.append(1))
    scores = score_perplexity(model, tokenizer, texts, bf16=False, shard_size=4, output_dir=folder / "shared")
    report = {"scores": scores.tolist(), "forwards": len(forwards)}
    (folder / f"rank{dist.get_rank()}.json").write_text(json.dumps(report))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))

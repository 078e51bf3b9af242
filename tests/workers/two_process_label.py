"""Worker for the two-process labeling test: label_topics under torchrun (gloo, world size 2).

Each rank labels its own shards into a shared folder and writes the columns it read back and the
number of forward passes it ran.
"""

import json
import sys
from pathlib import Path

import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets import Dataset  # noqa: E402
from test_topic_classifier import make_bert  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from hf_cpt.topics.labeling import label_topics  # noqa: E402


def main(folder: Path) -> None:
    dist.init_process_group("gloo")
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    texts = json.loads((folder / "texts.json").read_text())
    model = make_bert(len(tokenizer))
    forwards = []
    model.register_forward_pre_hook(lambda module, args: forwards.append(1))
    labelled = label_topics(
        Dataset.from_dict({"text": texts}), model, tokenizer=tokenizer, batch_size=4, bf16=False, shard_size=4,
        output_dir=folder / "shared", show_progress=False,
    )  # fmt: skip
    report = {"topic": list(labelled["topic"]), "topic_probs": list(labelled["topic_probs"]), "forwards": len(forwards)}
    (folder / f"rank{dist.get_rank()}.json").write_text(json.dumps(report))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))

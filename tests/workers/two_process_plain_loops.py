"""Worker for the two-process launch test: a plain `transformers.Trainer` with plain `TrainingArguments` (no
hf-cpt config, `use_cpu` left unset), or a plain `accelerate` loop with a bare `Accelerator()`, started by
`accelerate launch` with the two-process CPU config.

Each rank writes its world size as the run sees it, what `check_process_group` said, and the rows it trained
on (each row is identified by its first token).
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from accelerate import Accelerator, PartialState  # noqa: E402
from conftest import make_model  # noqa: E402
from datasets import Dataset  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from transformers import Trainer, TrainingArguments  # noqa: E402

from hf_cpt.utils.distributed import check_process_group  # noqa: E402

ROWS = 12
BATCH = 2


def train_with_trainer(output: Path, dataset: Dataset, collate) -> tuple[int, bool]:
    args = TrainingArguments(
        output_dir=str(output / "run"),
        per_device_train_batch_size=BATCH,
        max_steps=ROWS // (2 * BATCH),
        learning_rate=1e-3,
        report_to="none",
        save_strategy="no",
        ddp_find_unused_parameters=False,
        seed=0,
    )
    trainer = Trainer(model=make_model(vocab_size=32), args=args, train_dataset=dataset, data_collator=collate)
    trainer.train()
    return args.world_size, check_process_group(args)


def train_with_accelerate(dataset: Dataset, collate) -> tuple[int, bool]:
    accelerator = Accelerator()
    model = make_model(vocab_size=32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = DataLoader(dataset, batch_size=BATCH, collate_fn=collate)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    for batch in loader:
        accelerator.backward(model(**batch).loss)
        optimizer.step()
        optimizer.zero_grad()
    return accelerator.num_processes, check_process_group(accelerator)


def main(loop: str, output: Path) -> None:
    seen: list[int] = []

    def collate(rows: list[dict]) -> dict[str, torch.Tensor]:
        input_ids = torch.tensor([row["input_ids"] for row in rows])
        seen.extend(input_ids[:, 0].tolist())
        return {"input_ids": input_ids, "labels": input_ids.clone()}

    dataset = Dataset.from_dict({"input_ids": [[3 + row] * 8 for row in range(ROWS)]})
    if loop == "trainer":
        world_size, grouped = train_with_trainer(output, dataset, collate)
    else:
        world_size, grouped = train_with_accelerate(dataset, collate)
    report = {
        "world_size": world_size,
        "distributed_type": str(PartialState().distributed_type),
        "grouped": grouped,
        "seen": seen,
    }
    # Named by the launcher's rank: processes that do not form a group all have process_index 0.
    (output / f"rank{os.environ['RANK']}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))

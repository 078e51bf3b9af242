"""Worker for the crash-safety tests: a micro CPTTrainer stage that resumes from its newest checkpoint when run
again, as the recipe does (`get_last_checkpoint` of the stage folder). Run it alone or under torchrun.

    python crash_train.py OUTPUT

Environment:
    STALL_AT_STEP=N   the first save of checkpoint-N stops for a long while after writing weights and optimizer
                      (its trainer state not yet written), so that the test can kill the process mid-write;
    KILL_AFTER_STEP=N every rank kills itself with SIGKILL right after checkpoint-N is saved.

Rank 0 writes OUTPUT/result.json: world size, the last step, tokens consumed, the blocks this run trained (dataset
indices) and the stage's planned order.
"""

import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import RecordingTrainer, make_model, make_tokenizer, micro_config, write_corpus  # noqa: E402
from transformers import TrainerCallback  # noqa: E402
from transformers.trainer_utils import get_last_checkpoint  # noqa: E402

from hf_cpt.callbacks import global_batch_size  # noqa: E402
from hf_cpt.data import load_corpus  # noqa: E402
from hf_cpt.mixture import plan_stage  # noqa: E402

RATIOS = {"web-en": 0.6, "book-en": 0.2, "web-cn": 0.2}
BLOCKS = 32  # the stage's budget: 32 blocks of 32 tokens


class StallingTrainer(RecordingTrainer):
    def _save_optimizer_and_scheduler(self, output_dir):
        super()._save_optimizer_and_scheduler(output_dir)
        stall = os.environ.get("STALL_AT_STEP")
        marker = Path(self.args.output_dir).parent / "stalled"
        if stall and self.state.global_step == int(stall) and not marker.exists():
            marker.write_text(output_dir)
            time.sleep(600)


class KillAfterSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        kill = os.environ.get("KILL_AFTER_STEP")
        if kill and state.global_step == int(kill):
            os.kill(os.getpid(), signal.SIGKILL)


def main(output: Path) -> None:
    run = output / "run"
    args = micro_config(run, per_device_train_batch_size=2, save_strategy="steps", save_steps=2, logging_steps=1)
    rank = args.process_index
    tokenizer = make_tokenizer(output / f"tokenizer-{rank}")
    corpus_dir = output / f"corpus-{rank}"
    if not corpus_dir.exists():
        write_corpus(corpus_dir)
    corpus = load_corpus(str(corpus_dir), list(RATIOS), tokenizer, 32, topic_sources=["web-en", "web-cn"])
    global_batch = global_batch_size(args)
    sampler = plan_stage(corpus.train, RATIOS, 32 * BLOCKS, global_batch, seed=3)
    trainer = StallingTrainer(
        model=make_model(len(tokenizer)),
        args=args,
        train_dataset=corpus.train,
        train_sampler=sampler,
        processing_class=tokenizer,
        callbacks=[KillAfterSave()],
    )
    trainer.train(resume_from_checkpoint=get_last_checkpoint(run) if run.is_dir() else None)
    trainer.save_model()
    if rank == 0:
        index_of = {tuple(row["input_ids"]): i for i, row in enumerate(corpus.train)}
        result = {
            "world_size": args.world_size,
            "global_step": trainer.state.global_step,
            "tokens_consumed": sum(trainer.tokens_consumed.values()),
            "seen": [index_of[tuple(block)] for block in trainer.seen],
            "planned": sampler.indices(0, len(sampler)).tolist(),
        }
        (output / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

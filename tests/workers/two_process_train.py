"""Worker for the two-process test: a micro CPTTrainer run under torchrun (gloo, world size 2), with the
topic mixture re-weighting every 2 steps and the curriculum ordering web-cn, re-scored at step 3.

Each rank writes the blocks it trained on, the global order its sampler drew (under the weight changes
it made), the mixture's rounds and weight history, and its world size.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import RecordingTrainer, make_model, make_tokenizer, micro_config, write_corpus  # noqa: E402

from hf_cpt.data import load_corpus  # noqa: E402
from hf_cpt.mixture import plan_stage  # noqa: E402


def main(output: Path) -> None:
    args = micro_config(
        output / "run",
        per_device_train_batch_size=2,
        mixture_alpha=0.5,
        mixture_round_steps=2,
        mixture_scope="all",
        curriculum_order="LH",
        curriculum_topics=["web-cn"],
        curriculum_num_difficulty_groups=2,
        curriculum_rescore_steps=3,
    )
    rank = args.process_index
    tokenizer = make_tokenizer(output / f"tokenizer-{rank}")
    corpus = load_corpus(
        str(write_corpus(output / f"corpus-{rank}")),
        ["web-en", "book-en", "web-cn"],
        tokenizer,
        32,
        topic_sources=["web-en", "web-cn"],
    )
    global_batch = args.per_device_train_batch_size * args.world_size
    sampler = plan_stage(
        corpus.train, {"web-en": 0.6, "book-en": 0.2, "web-cn": 0.2}, 32 * global_batch * 6, global_batch
    )
    trainer = RecordingTrainer(
        model=make_model(len(tokenizer)),
        args=args,
        train_dataset=corpus.train,
        train_sampler=sampler,
        processing_class=tokenizer,
        topic_eval_dataset=corpus.validation,
    )
    trainer.train()
    trainer.save_model()
    index_of = {tuple(row["input_ids"]): i for i, row in enumerate(corpus.train)}
    report = {
        "world_size": args.world_size,
        "planned": sampler.indices(0, len(sampler)).tolist(),
        "seen": [index_of[tuple(block)] for block in trainer.seen],
        "tokens_consumed": trainer.tokens_consumed,
        "rounds": trainer.mixture_callback.rounds,
        "weight_history": sampler.history,
        "rescores": trainer.curriculum_callback.rescores,
        "topic_of_index": list(corpus.train["group"]),
    }
    (output / f"rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

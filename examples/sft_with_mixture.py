"""Continual pre-training with TRL's `SFTTrainer`, the topic mixture (§3.2.1) and the perplexity curriculum (§3.2.2).

TRL trains on the topic-pure blocks of `hf_cpt.load_corpus` as they are (`packing=False`: TRL's packing
would re-pack the rows under the sampler, which the callbacks refuse at start). The trainer draws its
order from the stage's `TopicMixtureSampler`; `TopicPerplexityCallback` re-weights the topics of each
source every round and `PPLCurriculumCallback` plays the chosen sources low to high perplexity. Their
metrics join TRL's own logs (`loss`, `num_tokens`, ...) at every logging step.

    python examples/sft_with_mixture.py --model_name_or_path HuggingFaceTB/SmolLM2-135M \\
        --dataset_path survivi/Llama-3-SynE-Dataset --mixture '{"web-en": 0.8, "web-cn": 0.2}' \\
        --topic_sources web-en web-cn --curriculum_sources web-cn --num_tokens 10000000 \\
        --max_length 2048 --output_dir outputs/sft-mixture

Besides TRL's outputs, `output_dir` gets `topic_mixture.json` / `.png`, `curriculum.json` and
`mixture_draws.json` (blocks drawn per topic and the sampler's weight history).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer, TrlParser

from hf_cpt import PPLCurriculumCallback, TopicPerplexityCallback, load_corpus, plan_stage
from hf_cpt.data import source_of


@dataclass
class MixtureArguments:
    model_name_or_path: str = field(metadata={"help": "The model to continue pre-training (Hub id or folder)."})
    dataset_path: str = field(metadata={"help": "Corpus laid out as data/<source>/train-*.parquet|jsonl."})
    mixture: str = field(metadata={"help": 'Source ratios as JSON, e.g. {"web-en": 0.8, "web-cn": 0.2}.'})
    num_tokens: int = field(metadata={"help": "Tokens the mixture draws for training."})
    topic_sources: list[str] = field(default_factory=list, metadata={"help": "Sources packed per `topic`."})
    curriculum_sources: list[str] = field(default_factory=list, metadata={"help": "Sources played low to high."})
    mixture_alpha: float = field(default=0.5, metadata={"help": "Step size of the topic re-weighting."})
    mixture_round_steps: int = field(default=100, metadata={"help": "Optimizer steps per round."})


def main() -> None:
    script_args, config = TrlParser((MixtureArguments, SFTConfig)).parse_args_and_config()
    tokenizer = AutoTokenizer.from_pretrained(script_args.model_name_or_path)
    model = AutoModelForCausalLM.from_pretrained(script_args.model_name_or_path)
    ratios = json.loads(script_args.mixture)
    corpus = load_corpus(
        script_args.dataset_path, ratios, tokenizer, config.max_length, topic_sources=script_args.topic_sources
    )
    global_batch = config.per_device_train_batch_size * config.gradient_accumulation_steps * config.world_size
    sampler = plan_stage(corpus.train, ratios, script_args.num_tokens, global_batch, seed=config.seed)

    class MixtureSFTTrainer(SFTTrainer):
        """SFTTrainer drawing its training order from the stage's sampler."""

        def _get_train_sampler(self, train_dataset=None):
            return sampler

    trainer = MixtureSFTTrainer(model=model, args=config, train_dataset=corpus.train, processing_class=tokenizer)
    if script_args.curriculum_sources:  # before the mixture: its orders must be in place when the mixture resumes
        trainer.add_callback(
            PPLCurriculumCallback(sampler, corpus.train, topics=script_args.curriculum_sources, trainer=trainer)
        )
    trainer.add_callback(
        TopicPerplexityCallback(
            sampler,
            corpus.validation,
            trainer=trainer,
            alpha=script_args.mixture_alpha,
            round_steps=script_args.mixture_round_steps,
            partition={name: source_of(name) for name in sampler.topic_names},  # keep each source's share
        )
    )
    trainer.train()
    trainer.save_model()
    trainer.save_state()
    if trainer.is_world_process_zero():
        draws = sampler.draws_per_topic(trainer.state.global_step * global_batch)
        record = {"draws": draws, "history": sampler.history}
        (Path(config.output_dir) / "mixture_draws.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()

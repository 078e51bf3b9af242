"""`CPTConfig`: `TrainingArguments` with the training setup of Llama-3-SynE (§3.4) as defaults.

The paper trains with AdamW β = (0.9, 0.95), a Warmup-Stable-Decay schedule that warms up from
1e-7 to 1e-5 and then stays constant, bf16, gradient clipping 1.0 and gradient checkpointing. Those
are the defaults here; everything else is plain `TrainingArguments`, so a `CPTConfig` drops into any
`Trainer` script and is read from YAML by `trl.TrlParser` like TRL's own configs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments

from hf_cpt.callbacks import global_batch_size
from hf_cpt.curriculum.orders import check_curriculum
from hf_cpt.linear_cross_entropy import DEFAULT_CHUNK_SIZE, check_liger_kernel
from hf_cpt.mixture.update import check_rule_settings
from hf_cpt.utils.distributed import check_process_group
from hf_cpt.utils.environment import hardware_supports_bf16
from hf_cpt.utils.errors import parse_json_flag


@dataclass
class CPTConfig(TrainingArguments):
    """Training configuration for continual pre-training.

    Parameters beyond `TrainingArguments`:
        max_length: tokens per packed block (the paper: 8,192 for Llama-3, 2,048 for TinyLlama).
        warmup_start_lr: learning rate the warm-up starts from (the paper: 1e-7), instead of 0.
        warmup_tokens: warm-up length in tokens (the paper: 10B); overrides `warmup_steps` when set.
        decay_ratio: fraction of the steps spent in the final decay (0 = no decay, as in the paper).
        decay_type: shape of the decay, `"linear"` or `"cosine"`.
        min_lr_ratio: learning rate at the end of the decay, as a fraction of `learning_rate`.
        attn_implementation: attention kernel when the trainer loads the model itself; `None` picks
            FlashAttention 2 where installed and usable, else PyTorch sdpa.
        loss_chunk_size: positions per chunk of the training loss. The trainer takes the model's last hidden
            states instead of its logits and applies the output embeddings and the cross-entropy this many
            positions at a time (forward and backward), so no full-vocabulary logits tensor exists: one chunk's
            logits take `loss_chunk_size x vocabulary x 4` bytes (1,024 x 128,256 x 4 = 0.5 GB) instead of
            `batch x max_length x vocabulary x 4` per copy. With `use_liger_kernel`, Liger-Kernel's fused kernel
            does this instead. 0 computes the loss from the model's full logits, as `Trainer` does.

    Topic mixture (§3.2.1), active when `mixture_alpha` is set and the trainer draws from a
    `TopicMixtureSampler` with per-topic validation documents (`CPTTrainer(topic_eval_dataset=...)`):
        mixture_alpha: step size α of the re-weighting rule (the paper does not publish it).
        mixture_round_tokens / mixture_round_steps: length of a round (the paper: ~40B tokens); set one.
        mixture_importance: topic name -> importance w_i (default 1 each); JSON on the command line.
        mixture_min_proportion: floor on a topic's proportion within its scope (an extension; 0 = off).
        mixture_scope: `"source"` re-weights the topics of each source among themselves, keeping the
            stage's source ratios (Chinese : English = 2 : 8); `"all"` re-weights every group together.

    Perplexity curriculum (§3.2.2), active when `curriculum_order` is set and the trainer draws from a
    `TopicMixtureSampler`:
        curriculum_order: `LH` (the paper: low to high perplexity), `HL`, `RM`, `PB`, `BP` or `PBP`.
        curriculum_topics: topics, or sources standing for all their topics, to order (the paper: its
            Chinese data); default: every topic drawn.
        curriculum_num_difficulty_groups: difficulty groups (the paper: 10).
        curriculum_rescore_steps: re-score the blocks not drawn yet every this many steps and re-sort them
            into the remaining places of the order (`LH`/`HL`; an extension beyond the paper, off by default).

    Resuming (`hf_cpt.checkpoints`): every checkpoint records the run's fingerprint (mixture, corpus, block length,
    seed, batch, world size, the fields that change the data order); a resume whose fingerprint differs stops with
    one sentence naming what changed.
        resume_on_mismatch: resume anyway: the data order continues at the global position reached and the
            stage's token budget holds exactly (a changed world size or batch is always resumed this way); an
            edited mixture applies from that position on, the blocks before it keeping the weights they were
            drawn with.
    """

    # Method-specific defaults (§3.4).
    learning_rate: float = field(default=1e-5, metadata={"help": "Peak learning rate (paper: 1e-5)."})
    adam_beta2: float = field(default=0.95, metadata={"help": "AdamW beta2 (paper: 0.95)."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping (paper: 1.0)."})
    lr_scheduler_type: str = field(
        default="warmup_stable_decay",
        metadata={"help": "Learning-rate schedule; the default is WSD with a non-zero warm-up floor."},
    )
    bf16: bool | None = field(  # type: ignore[assignment]
        default=None,
        metadata={"help": "bf16 mixed precision; default: on where the hardware supports it."},
    )
    activation_checkpointing: bool | None = field(
        default=True, metadata={"help": "Gradient checkpointing (paper: on)."}
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Kept False: packed blocks carry a `group` column the trainer reads for per-topic logs."},
    )
    logging_steps: float = field(default=10, metadata={"help": "Log every N steps."})
    num_train_epochs: float = field(
        default=1.0,
        metadata={"help": "Passes over the planned order; a stage is one pass over its token budget."},
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False, metadata={"help": "Every parameter of a causal LM gets a gradient; skip DDP's search."}
    )

    # Continual pre-training options.
    max_length: int = field(default=8192, metadata={"help": "Tokens per packed block (paper: 8192)."})
    warmup_start_lr: float = field(default=1e-7, metadata={"help": "Warm-up starting lr (paper: 1e-7)."})
    warmup_tokens: int | None = field(
        default=None, metadata={"help": "Warm-up length in tokens (paper: 10B); overrides warmup_steps."}
    )
    decay_ratio: float = field(default=0.0, metadata={"help": "Fraction of steps in the final decay (paper: 0)."})
    decay_type: str = field(default="cosine", metadata={"help": "Decay shape: linear or cosine."})
    min_lr_ratio: float = field(default=0.0, metadata={"help": "lr at the end of the decay / learning_rate."})
    attn_implementation: str | None = field(
        default=None,
        metadata={"help": "Attention kernel; default: flash_attention_2 if installed, else sdpa."},
    )
    loss_chunk_size: int = field(
        default=DEFAULT_CHUNK_SIZE,
        metadata={"help": "Positions per chunk of the loss over the output embeddings; 0: from the full logits."},
    )

    mixture_alpha: float | None = field(
        default=None, metadata={"help": "Step size of the topic re-weighting; None keeps the weights fixed."}
    )
    mixture_round_tokens: int | None = field(
        default=None, metadata={"help": "Tokens per re-weighting round (paper: ~40B)."}
    )
    mixture_round_steps: int | None = field(default=None, metadata={"help": "Optimizer steps per round."})
    mixture_importance: dict | str | None = field(
        default=None, metadata={"help": "Topic name -> importance w_i (default 1); JSON on the command line."}
    )
    mixture_min_proportion: float = field(
        default=0.0, metadata={"help": "Floor on a topic's proportion within its scope (extension; 0 = off)."}
    )
    mixture_scope: str = field(
        default="source", metadata={"help": "source: re-weight topics within each source; all: every group."}
    )

    curriculum_order: str | None = field(
        default=None, metadata={"help": "Order within topics: LH (paper), HL, RM, PB, BP, PBP; None: seeded shuffle."}
    )
    curriculum_topics: list[str] | None = field(
        default=None, metadata={"help": "Topics or sources the curriculum orders; default: every topic drawn."}
    )
    curriculum_num_difficulty_groups: int = field(default=10, metadata={"help": "Difficulty groups (paper: 10)."})
    curriculum_rescore_steps: int | None = field(
        default=None,
        metadata={"help": "Re-score the blocks not drawn yet every N steps (LH/HL; beyond the paper, off by default)."},
    )

    resume_on_mismatch: bool = field(
        default=False,
        metadata={"help": "Resume a checkpoint whose mixture, corpus or data-order fields changed (else refused)."},
    )

    def __post_init__(self) -> None:
        if not torch.accelerator.is_available():
            # Say so explicitly: transformers allows bf16 without a GPU only then, and accelerate builds a
            # gloo process group across CPU processes only then (else each process trains alone).
            self.use_cpu = True
        if self.bf16 is None:
            self.bf16 = hardware_supports_bf16()
        if self.max_length < 2:
            raise ValueError(f"max_length is {self.max_length}; set it to the block length in tokens (e.g. 2048).")
        if not 0.0 <= self.decay_ratio < 1.0:
            raise ValueError(f"decay_ratio is {self.decay_ratio}; set it in [0, 1) (0 means no decay).")
        if self.decay_type not in ("linear", "cosine"):
            raise ValueError(f"decay_type is {self.decay_type!r}; set it to 'linear' or 'cosine'.")
        if not self.learning_rate > 0:
            raise ValueError(
                f"learning_rate is {self.learning_rate}; set it to a positive number (paper: 1e-5 for Llama-3-8B, "
                "1e-4 for TinyLlama)."
            )
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} is {getattr(self, name)}; set it to 1 or more.")
        if not 0.0 <= self.warmup_start_lr <= self.learning_rate:
            raise ValueError(
                f"warmup_start_lr is {self.warmup_start_lr}; set it between 0 and learning_rate ({self.learning_rate})."
            )
        if self.warmup_tokens is not None and self.warmup_tokens < 0:
            raise ValueError(f"warmup_tokens is {self.warmup_tokens}; set it to 0 or more tokens.")
        if self.loss_chunk_size < 0:
            raise ValueError(
                f"loss_chunk_size is {self.loss_chunk_size}; set it to positions per chunk (e.g. 1024), or 0 for the "
                "full logits."
            )
        if self.use_liger_kernel and self.loss_chunk_size:
            check_liger_kernel()
        self._check_mixture_fields()
        if self.curriculum_order is not None or self.curriculum_rescore_steps is not None:
            check_curriculum(self.curriculum_order, self.curriculum_rescore_steps, prefix="curriculum_")
        if self.curriculum_num_difficulty_groups < 1:
            raise ValueError(
                f"curriculum_num_difficulty_groups is {self.curriculum_num_difficulty_groups}; set it to 1 or more "
                "(paper: 10)."
            )
        super().__post_init__()
        check_process_group(self)

    def _check_mixture_fields(self) -> None:
        if isinstance(self.mixture_importance, str):
            self.mixture_importance = parse_json_flag(
                "--mixture_importance", self.mixture_importance, "a mapping topic -> importance"
            )
        if self.mixture_scope not in ("source", "all"):
            raise ValueError(f"mixture_scope is {self.mixture_scope!r}; set it to 'source' or 'all'.")
        if not 0.0 <= self.mixture_min_proportion < 1.0:
            raise ValueError(f"mixture_min_proportion is {self.mixture_min_proportion}; set it in [0, 1).")
        if self.mixture_alpha is None:
            return
        check_rule_settings(self.mixture_alpha, field="mixture_alpha")
        if (self.mixture_round_tokens is None) == (self.mixture_round_steps is None):
            raise ValueError(
                "mixture_alpha is set: set exactly one of mixture_round_tokens (paper: ~40B) and mixture_round_steps."
            )

    @property
    def tokens_per_step(self) -> int:
        """Tokens in one optimizer step across all processes (every block is full)."""
        return self.max_length * global_batch_size(self)

    def get_warmup_steps(self, num_training_steps: int) -> int:
        if self.warmup_tokens is not None:
            return min(num_training_steps, math.ceil(self.warmup_tokens / self.tokens_per_step))
        return super().get_warmup_steps(num_training_steps)

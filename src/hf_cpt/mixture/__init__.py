"""Topic mixture (§3.2.1): the sampler, the paper's re-weighting rule, the per-topic perplexity callback,
and the planning of a stage's draws."""

from hf_cpt.mixture.callback import TopicPerplexityCallback
from hf_cpt.mixture.sampler import TopicMixtureSampler
from hf_cpt.mixture.stage import load_drawn_blocks, plan_stage, save_drawn_blocks, stage_group_weights
from hf_cpt.mixture.update import MixtureUpdate, compute_mixture_update, update_mixture
from hf_cpt.utils.distributed import next_common_position

__all__ = [
    "MixtureUpdate",
    "TopicMixtureSampler",
    "TopicPerplexityCallback",
    "compute_mixture_update",
    "load_drawn_blocks",
    "next_common_position",
    "plan_stage",
    "save_drawn_blocks",
    "stage_group_weights",
    "update_mixture",
]

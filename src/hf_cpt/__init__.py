"""hf-cpt: continual pre-training of LLMs with the Llama-3-SynE method (arXiv 2407.18743)."""

from hf_cpt.config import CPTConfig
from hf_cpt.curriculum import PPLCurriculumCallback, score_perplexity
from hf_cpt.data import collate_blocks, load_corpus
from hf_cpt.mixture import TopicMixtureSampler, TopicPerplexityCallback, plan_stage, update_mixture
from hf_cpt.trainer import CPTTrainer

__version__ = "0.1.0.dev0"

__all__ = [
    "CPTConfig",
    "CPTTrainer",
    "PPLCurriculumCallback",
    "TopicMixtureSampler",
    "TopicPerplexityCallback",
    "collate_blocks",
    "load_corpus",
    "plan_stage",
    "score_perplexity",
    "update_mixture",
]

"""hf-cpt: continual pre-training of LLMs with the Llama-3-SynE method (arXiv 2407.18743).

The names below are imported when first used (`hf_cpt.utils.imports.lazy_exports`), so `import hf_cpt`, and
`import hf_cpt.hub` for a push, do not load torch or the Trainer.
"""

from typing import TYPE_CHECKING

from hf_cpt.utils.imports import lazy_exports

__version__ = "0.1.0.dev0"

_STRUCTURE = {
    "hf_cpt.config": ["CPTConfig"],
    "hf_cpt.curriculum": ["PPLCurriculumCallback", "score_perplexity"],
    "hf_cpt.data": ["collate_blocks", "load_corpus"],
    "hf_cpt.mixture": ["TopicMixtureSampler", "TopicPerplexityCallback", "plan_stage", "update_mixture"],
    "hf_cpt.trainer": ["CPTTrainer"],
}

if TYPE_CHECKING:
    from hf_cpt.config import CPTConfig  # noqa: F401
    from hf_cpt.curriculum import PPLCurriculumCallback, score_perplexity  # noqa: F401
    from hf_cpt.data import collate_blocks, load_corpus  # noqa: F401
    from hf_cpt.mixture import TopicMixtureSampler, TopicPerplexityCallback, plan_stage, update_mixture  # noqa: F401
    from hf_cpt.trainer import CPTTrainer  # noqa: F401

__getattr__, __dir__, __all__ = lazy_exports(__name__, _STRUCTURE)

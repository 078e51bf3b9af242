"""Perplexity curriculum (§3.2.2): corpus-scale perplexity scoring, the difficulty and discipline orders,
and the callback that plays an order within the topics of a `TopicMixtureSampler`."""

from hf_cpt.curriculum.callback import PPLCurriculumCallback
from hf_cpt.curriculum.orders import ORDERS, curriculum_order, difficulty_groups
from hf_cpt.curriculum.scoring import score_perplexity

__all__ = ["ORDERS", "PPLCurriculumCallback", "curriculum_order", "difficulty_groups", "score_perplexity"]

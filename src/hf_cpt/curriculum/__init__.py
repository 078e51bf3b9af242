"""Perplexity curriculum (§3.2.2): corpus-scale perplexity scoring and the difficulty and discipline orders."""

from hf_cpt.curriculum.orders import ORDERS, curriculum_order, difficulty_groups
from hf_cpt.curriculum.scoring import score_perplexity

__all__ = ["ORDERS", "curriculum_order", "difficulty_groups", "score_perplexity"]

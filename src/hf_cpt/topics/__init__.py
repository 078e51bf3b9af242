"""Topic classification (§3.2.1): taxonomies, LLM annotation, classifier training and corpus labelling."""

from hf_cpt.topics.taxonomy import CHINESE, ENGLISH, OTHERS, TAXONOMIES, Taxonomy, load_taxonomy

__all__ = ["CHINESE", "ENGLISH", "OTHERS", "TAXONOMIES", "Taxonomy", "load_taxonomy"]

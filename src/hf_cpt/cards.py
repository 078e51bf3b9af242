"""Hub cards rendered from the Markdown templates in `hf_cpt/templates/`, the way TRL renders its model cards.

A card's text lives in its template (Jinja), with the card's YAML metadata at the top (`{{ card_data }}`);
the caller gives the metadata as a `huggingface_hub.ModelCardData` or `DatasetCardData` and the numbers.
`ModelCard.from_template` / `DatasetCard.from_template` render it and parse the metadata back, so a card
whose metadata the Hub would not read fails here. Every card cites the paper (`llama3_syne_citation.bib`).
"""

from __future__ import annotations

from importlib.resources import files
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from huggingface_hub import CardData

TEMPLATES = files("hf_cpt") / "templates"
CITATION_TEMPLATE = "llama3_syne_citation.bib"


def paper_citation() -> str:
    """The BibTeX entry of the paper the method comes from (arXiv 2407.18743)."""
    return (TEMPLATES / CITATION_TEMPLATE).read_text(encoding="utf-8").strip()


def render_card(template: str, card_data: CardData, **values: Any) -> str:
    """The card `template` (a file in `hf_cpt/templates/`) with `card_data` as its metadata and `values` in its text.

    `citation` (the paper's BibTeX) is given to every template; the card ends with a newline.
    """
    from huggingface_hub import DatasetCard, DatasetCardData, ModelCard

    card_class = DatasetCard if isinstance(card_data, DatasetCardData) else ModelCard
    text = (TEMPLATES / template).read_text(encoding="utf-8")
    card = card_class.from_template(card_data, template_str=text, citation=paper_citation(), **values)
    return card.content.rstrip("\n") + "\n"

"""The bundled demo corpus: English and Chinese documents laid out like `survivi/Llama-3-SynE-Dataset`.

Written for this project (Apache-2.0); `demo/README.md` lists every file with its source and licence.
"""

from __future__ import annotations

from pathlib import Path

DEMO_CORPUS_PATH = str(Path(__file__).parent / "demo")


def demo_snippets_path() -> str:
    """Science snippets with a `discipline` column, the seeds for synthetic QA (§3.3)."""
    return str(Path(DEMO_CORPUS_PATH) / "snippets" / "science.jsonl")

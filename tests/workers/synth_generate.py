"""Worker for the kill test: generates slowly into OUTPUT/out, logging each item as its result is recorded."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets import load_dataset  # noqa: E402
from test_synth_generator import ScriptedBackend  # noqa: E402

from hf_cpt.synth import SynthQAGenerator  # noqa: E402


def main(folder: Path, log: Path) -> None:
    data = load_dataset("json", data_files=str(folder / "snippets.jsonl"), split="train")
    SynthQAGenerator(ScriptedBackend(delay=0.3, log=log), folder / "out", chunk_size=5).generate(data)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

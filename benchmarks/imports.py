"""Import time of `hf_cpt` and `hf_cpt.hub` against `transformers`, each in a fresh interpreter.

Goal (issue: the house): `import hf_cpt` ≤ 1.2 × `import transformers`, and `import hf_cpt.hub` loads no torch.
The three imports are timed interleaved, `--repeats` times each, and the medians compared, so a busy machine
slows all of them alike.

    python benchmarks/imports.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

STATEMENTS = {
    "transformers": "import transformers",
    "hf_cpt": "import hf_cpt",
    "hf_cpt.hub": "import hf_cpt.hub",
    "from hf_cpt import CPTTrainer": "from hf_cpt import CPTTrainer",
}


def time_import(statement: str) -> float:
    """Seconds for a fresh interpreter to run `statement` and exit, less an empty interpreter's start."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in ["python", *STATEMENTS]}
    for _ in range(args.repeats):
        times["python"].append(time_import("pass"))
        for name, statement in STATEMENTS.items():
            times[name].append(time_import(statement))
    start = statistics.median(times["python"])
    medians = {name: statistics.median(values) - start for name, values in times.items() if name != "python"}
    base = medians["transformers"]
    print(f"median of {args.repeats} fresh interpreters, interpreter start ({start:.3f} s) subtracted")
    print(f"{'import':<32}{'seconds':>9}{'× transformers':>16}")
    for name, seconds in medians.items():
        print(f"{name:<32}{seconds:>9.3f}{seconds / base:>16.2f}")


if __name__ == "__main__":
    main()

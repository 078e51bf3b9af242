"""Shared plumbing: what several parts of hf-cpt need and none of them owns.

The rule for what goes here: code that knows nothing of the method. A module of `utils` may speak of processes,
files, retries, optional packages, batches, hashing and text folding, but never of topics, mixtures, curricula,
stages, QA pairs or benchmarks; it imports no other part of hf-cpt (only other `utils` modules), so every part
can use it and it can be read alone. When a helper needs a word of the method to explain itself, it belongs to
that part instead.

- `distributed`: this process's rank and the world size, barriers, broadcasts, the first position no rank's
  sampler has drawn, and the check that launched processes really run together.
- `environment`: the cache folder, bf16 support of the hardware.
- `imports`: `is_*_available` for the optional packages, and the one message that names the extra to install.
- `errors`: the error base class, one sentence for an OS error (full disk, read-only folder) naming the path, and
  `run_main`, the entry-point wrapper that prints an error's sentence alone (`--debug` for the traceback).
- `io`: one atomic write (a file or a folder appears whole or not at all), one dataset split saved in Hub layout.
- `retry`: one exponential backoff with jitter that honours a server's Retry-After, and the loop around it.
- `records`: append-only JSON-lines records of finished work items, merged over processes and runs.
- `resumable`: passes over many items split across ranks that resume where a killed run stopped: sharded array
  results (`ShardedPass.run`) and record-keyed items (`run_pending`).
- `inference`: token id lists padded into a batch with its attention mask, and a model in eval mode meanwhile.
- `hashing`: SplitMix64 and polynomial span hashes over numpy arrays.
- `text`: Unicode folding and word/character tokens for matching texts, and their n-gram hashes.

Modules are imported where they are used (`from hf_cpt.utils.io import write_text_atomically`); this package
imports none of them, so `import hf_cpt.utils` costs nothing.
"""

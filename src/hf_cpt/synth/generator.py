"""`SynthQAGenerator`: scientific and code QA pairs written by an LLM from seed snippets (§3.3).

Producing 1.5B tokens of synthetic QA is a long job that fails in the middle: a server answers 500,
a node is pre-empted, a process is killed. So every request is an *item* with a key, a hash of what
determines its output (task, prompt, model, sampling settings, seed text, sample number), and every
finished item is appended to a records file the moment its completion arrives. A restarted run reads
the records, skips every finished item and asks only for the rest: nothing is lost and nothing is
generated twice. Items whose request failed (the backend gave up after its retries) are recorded as
failed and asked again by the next run.

The records then become a `datasets.Dataset` of accepted pairs: parsed (`parse_qa`), validated
(empty, truncated, copied from the seed), exact and near duplicates removed, and anything that
overlaps a benchmark dropped (`filter_dataset`). Every reject and every drop is kept with its reason;
`report` counts them, with accept rates per discipline.

Output folder:
    records/rank<r>-<run>.jsonl   every item's outcome, one JSON line each (the source of truth)
    data/train-00000-of-00001.parquet   the accepted pairs (Hub layout, what `push_to_hub` uploads)
    rejects.jsonl                 rejected, failed and filtered items with their reasons
    report.json                   counts, accept rates, filter report, provenance
    README.md                     the dataset card
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset

from hf_cpt.evaluation.benchmarks import bundled_questions
from hf_cpt.generation.base import Completion, GenerationBackend, Messages, SamplingParams
from hf_cpt.generation.prompts import PROMPTS
from hf_cpt.generation.runner import run_requests
from hf_cpt.synth.card import synthetic_dataset_card
from hf_cpt.synth.filters import filter_dataset
from hf_cpt.synth.parsing import accept_rates, check_qa
from hf_cpt.synth.prompts import code_qa_messages, sample_code_examples, scientific_qa_messages
from hf_cpt.utils.distributed import rank_and_world
from hf_cpt.utils.errors import HFCPTError
from hf_cpt.utils.io import save_split, split_file, write_text_atomically
from hf_cpt.utils.records import FAILED, RecordLog

logger = logging.getLogger(__name__)

TASKS = ("scientific_qa", "code_qa")
DATA_FILE = split_file("train")
COLUMNS = (
    "text",
    "problem",
    "solution",
    "discipline",
    "seed_id",
    "model",
    "backend",
    "prompt_version",
    "temperature",
    "top_p",
    "max_new_tokens",
    "sampling_seed",
    "prompt_tokens",
    "completion_tokens",
    "key",
)


@dataclass(frozen=True)
class SynthItem:
    """One request: the conversation to send, how to sample it, and what its record needs to say where it came from."""

    key: str
    seed_id: str
    discipline: str
    seed_text: str
    sample: int
    messages: Messages
    sampling: SamplingParams


class SynthQAGenerator:
    """QA pairs from seed snippets through any `GenerationBackend`, resumable, deduplicated and decontaminated.

    Args:
        backend: a `GenerationBackend` (`load_backend("transformers" | "vllm" | "openai", model, ...)`).
        output_dir: where records, the dataset, the rejects, the report and the card are written; a run
            pointed at a folder with records continues it.
        task: `scientific_qa` (the Appendix B prompt over seed snippets) or `code_qa` (new problems from
            demonstrations of `code_problems`).
        sampling: sampling settings; default: up to 512 new tokens (the paper's 250–350-word solutions),
            temperature 0.7, top-p 0.95.
        samples_per_seed: pairs asked for each seed snippet (each with its own sampling seed).
        text_column, discipline_column: columns of the snippets.
        id_column: a column naming each snippet, recorded as `seed_id`; default: the row number.
        code_problems: LeetCode-style problems (`title`, `content`, `python` columns, as
            `greengerong/leetcode`) to draw demonstrations from, for `code_qa`.
        num_examples: demonstrations per code prompt.
        chunk_size: items handed to the backend at once (a progress unit; results are recorded per item).
        seed: draws the demonstrations of code prompts.
        show_progress: progress bars on the main process.

    Example:
        >>> backend = load_backend("openai", "mistralai/Mistral-7B-Instruct-v0.3", base_url="http://localhost:8000/v1")
        >>> generator = SynthQAGenerator(backend, "synth-out")
        >>> pairs = generator.generate(load_dataset("json", data_files="snippets.jsonl", split="train"))
        >>> generator.report["accept_rates"]
    """

    def __init__(
        self,
        backend: GenerationBackend,
        output_dir: str | os.PathLike[str],
        *,
        task: str = "scientific_qa",
        sampling: SamplingParams | None = None,
        samples_per_seed: int = 1,
        text_column: str = "text",
        discipline_column: str = "discipline",
        id_column: str | None = None,
        code_problems: Dataset | Sequence[Mapping[str, Any]] | None = None,
        num_examples: int = 3,
        chunk_size: int = 64,
        seed: int = 0,
        show_progress: bool = True,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"task is {task!r}; use one of {list(TASKS)}.")
        if task == "code_qa" and code_problems is None:
            raise ValueError("task 'code_qa' needs code_problems (title, content and python columns) to draw from.")
        if samples_per_seed < 1:
            raise ValueError(f"samples_per_seed is {samples_per_seed}; ask for at least 1 pair per seed.")
        if chunk_size < 1:
            raise ValueError(f"chunk_size is {chunk_size}; set it to 1 or more.")
        self.backend = backend
        self.output_dir = Path(output_dir)
        self.task = task
        self.prompt = PROMPTS[task]
        self.sampling = sampling or SamplingParams()
        self.samples_per_seed = samples_per_seed
        self.text_column = text_column
        self.discipline_column = discipline_column
        self.id_column = id_column
        self.code_problems = code_problems
        self.num_examples = num_examples
        self.chunk_size = chunk_size
        self.seed = seed
        self.show_progress = show_progress
        self.report: dict[str, Any] = {}
        self._log = RecordLog(self.output_dir / "records")

    # ---- planning ----
    def _sampling_for(self, sample: int) -> SamplingParams:
        return dataclasses.replace(self.sampling, seed=self.sampling.seed + sample)

    def _key(self, seed_text: str, sample: int) -> str:
        """What determines an item's output, hashed: the same item gets the same key in every run."""
        parts = [
            self.task,
            self.prompt.fingerprint,
            self.backend.model_name,
            self._sampling_for(sample).to_dict(),
            seed_text,
            sample,
        ]
        return hashlib.blake2b(json.dumps(parts, sort_keys=True).encode(), digest_size=16).hexdigest()

    def plan(self, snippets: Dataset | None = None, num_items: int | None = None) -> list[SynthItem]:
        """Every item of the run, in order: `samples_per_seed` per snippet, or `num_items` code prompts."""
        if self.task == "code_qa":
            if not num_items or num_items < 1:
                raise ValueError("num_items is unset; say how many code QA pairs to ask for.")
            return [self._code_item(number) for number in range(num_items)]
        if snippets is None:
            raise ValueError("snippets is missing; pass a Dataset with the seed texts and their disciplines.")
        for column in (self.text_column, self.discipline_column, self.id_column):
            if column is not None and column not in snippets.column_names:
                raise ValueError(
                    f"Column {column!r} is not in the snippets (columns: {snippets.column_names}); name the "
                    "column that holds it."
                )
        rows = snippets.select(range(min(num_items, len(snippets)))) if num_items else snippets
        items = []
        for row_number, row in enumerate(rows):
            text, discipline = str(row[self.text_column]), str(row[self.discipline_column])
            if not text.strip():
                raise ValueError(f"Snippet {row_number} is empty; drop empty rows before generating.")
            messages = scientific_qa_messages(text, discipline)  # also checks the discipline
            seed_id = str(row[self.id_column]) if self.id_column else str(row_number)
            for sample in range(self.samples_per_seed):
                items.append(self._item(seed_id, discipline.strip().lower(), text, sample, messages))
        return items

    def _item(self, seed_id: str, discipline: str, seed_text: str, sample: int, messages: Messages) -> SynthItem:
        sampling = self._sampling_for(sample)
        return SynthItem(self._key(seed_text, sample), seed_id, discipline, seed_text, sample, messages, sampling)

    def _code_item(self, number: int) -> SynthItem:
        examples = sample_code_examples(self.code_problems, self.num_examples, seed=self.seed * 1_000_003 + number)
        seed_text = "\n\n".join(str(example["content"]) for example in examples)
        seed_id = "+".join(str(example.get("id", example["title"])) for example in examples)
        return self._item(seed_id, "code", seed_text, number, code_qa_messages(examples))

    # ---- records ----
    def read_records(self) -> dict[str, dict[str, Any]]:
        """The latest record of every item on disk, by key."""
        return self._log.read()

    def _record(self, item: SynthItem, completion: Completion) -> dict[str, Any]:
        record: dict[str, Any] = {
            "key": item.key,
            "seed_id": item.seed_id,
            "discipline": item.discipline,
            "sample": item.sample,
            "model": self.backend.model_name,
            "backend": self.backend.name,
            "prompt_version": self.prompt.version,
            "prompt_fingerprint": self.prompt.fingerprint,
            "sampling": item.sampling.to_dict(),
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "finish_reason": completion.finish_reason,
            "attempts": completion.attempts,
            "raw": completion.text,
            "problem": None,
            "solution": None,
        }
        if not completion.ok:
            return {**record, "status": FAILED, "reject_reason": "request_failed", "error": completion.error}
        check = check_qa(
            completion.text, seed=item.seed_text, finish_reason=completion.finish_reason, instructions=self.prompt.text
        )
        status = "accepted" if check.accepted else "rejected"
        return {**record, "status": status, "reject_reason": check.reject_reason, "error": None,
                "problem": check.problem, "solution": check.solution}  # fmt: skip

    # ---- generation ----
    def run(self, items: Sequence[SynthItem]) -> dict[str, dict[str, Any]]:
        """Generate every item of `items` not finished yet (this rank's share); returns all records by key."""
        return run_requests(
            self.backend,
            items,
            self._log,
            self._record,
            chunk_size=self.chunk_size,
            show_progress=self.show_progress,
            what="Synthetic QA",
        )

    def generate(
        self,
        snippets: Dataset | None = None,
        num_items: int | None = None,
        *,
        benchmark_texts: Iterable[str] | None = None,
        near_dedup_threshold: float | None = 0.8,
    ) -> Dataset:
        """Run (or resume) the generation, then parse, validate, deduplicate and decontaminate.

        Args:
            benchmark_texts: benchmark questions no pair may quote; default: the questions of the evaluation
                suite bundled with hf-cpt (pass the questions of the benchmarks you report, e.g. MMLU's, or
                an empty list to skip decontamination).
            near_dedup_threshold: MinHash Jaccard similarity above which pairs are near duplicates (None: off).

        Returns the accepted pairs (columns `COLUMNS`), also written to `data/` with `rejects.jsonl`,
        `report.json` and the dataset card `README.md`; `self.report` holds the counts.

        When no pair is kept (every request failed, was rejected or filtered), `report.json` (with
        `failure_reasons` and `first_error`) and `rejects.jsonl` are written, `data/` and the card are not, so
        nothing empty can be pushed; the warning logged then is `SynthesisFailed`'s sentence, which `hf-cpt synth`
        raises.
        """
        items = self.plan(snippets, num_items)
        records = self.run(items)
        planned = [records[item.key] for item in items if item.key in records]
        accepted = [record for record in planned if record["status"] == "accepted"]
        pairs = Dataset.from_list([_row(record) for record in accepted]) if accepted else _empty()
        benchmark_texts = bundled_questions() if benchmark_texts is None else list(benchmark_texts)
        kept, filters, dropped = filter_dataset(
            pairs, "text", dedup=True, near_dedup_threshold=near_dedup_threshold, benchmark_texts=benchmark_texts
        )
        self.report = self._report(items, planned, kept, {**filters.to_dict(), "benchmark_texts": len(benchmark_texts)})
        self.report["failure_reasons"] = _failure_reasons(planned, len(dropped))
        self.report["first_error"] = next((r["error"] for r in planned if r.get("error")), None)
        if rank_and_world()[0] == 0:
            self._write(kept, planned, dropped)
        if not len(kept):
            logger.warning("%s", SynthesisFailed(self.report, self.output_dir))
        return kept

    def _report(self, items, planned, kept: Dataset, filters: dict[str, Any]) -> dict[str, Any]:
        statuses = Counter(record["status"] for record in planned)
        return {
            "task": self.task,
            "model": self.backend.model_name,
            "backend": self.backend.name,
            "prompt_version": self.prompt.version,
            "prompt_fingerprint": self.prompt.fingerprint,
            "sampling": self.sampling.to_dict(),
            "samples_per_seed": self.samples_per_seed,
            "items": len(items),
            "finished": len(planned),
            "accepted": statuses["accepted"],
            "rejected": dict(Counter(r["reject_reason"] for r in planned if r["status"] == "rejected")),
            "failed": statuses["failed"],
            "accept_rates": accept_rates(planned),
            "filters": filters,
            "kept": len(kept),
            "kept_per_discipline": dict(Counter(kept["discipline"])) if len(kept) else {},
            "completion_tokens": sum(kept["completion_tokens"]) if len(kept) else 0,
        }

    def _write(self, kept: Dataset, planned: list[dict[str, Any]], dropped: Dataset) -> None:
        if len(kept):  # an empty dataset is never written, so it can never be pushed
            save_split(kept, self.output_dir, "train")
        rejects = [record for record in planned if record["status"] != "accepted"]
        rejects += [{**row, "status": "filtered"} for row in dropped]
        write_text_atomically(
            self.output_dir / "rejects.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects)
        )
        write_text_atomically(self.output_dir / "report.json", json.dumps(self.report, indent=2, ensure_ascii=False))
        if len(kept):
            write_text_atomically(self.output_dir / "README.md", synthetic_dataset_card(self.report, kept[0]))

    def push_to_hub(self, repo_id: str, *, token: str | None = None, private: bool = False, dry_run: bool = False):
        """Upload the dataset (`data/`) and its card (`README.md`) as a Hub dataset repo.

        With `dry_run` nothing is uploaded; the folder that would be is returned. See `hf_cpt.hub`.
        """
        from hf_cpt.hub import push_folder

        if not (self.output_dir / DATA_FILE).is_file():
            raise ValueError(
                f"{self.output_dir} holds no generated pairs (none yet, or none kept: see its report.json); run "
                "generate() until it keeps pairs before push_to_hub."
            )
        return push_folder(
            self.output_dir, repo_id, repo_type="dataset", include=["data/*", "README.md"], token=token,
            private=private, dry_run=dry_run, commit_message="Upload synthetic QA pairs (hf-cpt)",
        )  # fmt: skip


class SynthesisFailed(HFCPTError):
    """A synthesis run that kept no pair: one sentence with the counts by reason and the first error verbatim.

    Raised by `hf-cpt synth` (exit status 1); a script calling `generate()` raises it the same way on an empty
    result: `if not len(pairs): raise SynthesisFailed(generator.report, generator.output_dir)`.

    `report` is the run's report (also in `report.json`, beside `rejects.jsonl`); the records stay, so the same
    run asked again once the cause is fixed asks only for the items that failed.
    """

    def __init__(self, report: Mapping[str, Any], output_dir: Path) -> None:
        self.report = dict(report)
        reasons = ", ".join(f"{reason} {count}" for reason, count in report["failure_reasons"].items()) or "none"
        first = report.get("first_error")
        super().__init__(
            f"Synthetic QA kept 0 of {report['items']} items (by reason: {reasons})"
            + (f"; first error: {first}" if first else "")
            + f"; fix the cause (the server for failed requests, the model or sampling settings for rejects; "
            f"details in {output_dir / 'rejects.jsonl'}) and run again: failed requests are asked again, finished "
            "items only under other settings."
        )


def _failure_reasons(planned: Sequence[Mapping[str, Any]], filtered: int) -> dict[str, int]:
    """Items not kept, by reason (`request_failed`, each reject reason, and `filtered` by dedup or benchmarks)."""
    reasons = Counter(str(record["reject_reason"]) for record in planned if record["status"] != "accepted")
    if filtered:
        reasons["filtered"] = filtered
    return dict(reasons.most_common())


def _row(record: Mapping[str, Any]) -> dict[str, Any]:
    sampling = record["sampling"]
    return {
        "text": f"{record['problem']}\n\n{record['solution']}",
        "problem": record["problem"],
        "solution": record["solution"],
        "discipline": record["discipline"],
        "seed_id": record["seed_id"],
        "model": record["model"],
        "backend": record["backend"],
        "prompt_version": record["prompt_version"],
        "temperature": float(sampling["temperature"]),
        "top_p": float(sampling["top_p"]),
        "max_new_tokens": int(sampling["max_new_tokens"]),
        "sampling_seed": int(sampling["seed"]),
        "prompt_tokens": int(record["prompt_tokens"]),
        "completion_tokens": int(record["completion_tokens"]),
        "key": record["key"],
    }


def _empty() -> Dataset:
    from datasets import Features, Value

    types = {"temperature": "float64", "top_p": "float64", "max_new_tokens": "int64", "sampling_seed": "int64"}
    types |= {"prompt_tokens": "int64", "completion_tokens": "int64"}
    return Dataset.from_dict(
        {column: [] for column in COLUMNS},
        features=Features({column: Value(types.get(column, "string")) for column in COLUMNS}),
    )

"""Checkpoints that are complete or ignored, and resumes that notice when the run changed.

A job killed while it writes `checkpoint-N` must not leave a folder that the next run trusts: `CPTTrainer` writes
every checkpoint into a staging folder and renames it into place once every file is there, and on resume it checks
the checkpoint (trainer state, weights whole, optimizer, scheduler and RNG files, our own JSON) and falls back to
the previous complete one with a warning that names what was missing (`resolve_checkpoint`).

A resumed stage must also train what it was asked to. Every checkpoint and every finished stage folder holds the
run's fingerprint (`run_fingerprint.json`): the stage's mixture, the corpus, block length, seed, batch and world
size, and the config fields that change the data order. A resume whose fingerprint differs stops with one sentence
naming what changed (`check_resume`), unless `CPTConfig.resume_on_mismatch` asks to go on; then, and for a changed
world size or batch, the data order continues at the global position (blocks) the checkpoint had reached and the
stage's token budget holds to the block. An edited mixture applies from that position on: the blocks before it keep
the weights they were drawn with (restored from the checkpoint's data recipe, the topic mixture's rounds
included), so the data recipe's weight history records what was trained. `check_finished_stage` does the same
for a stage whose finished folder is about to be reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FINGERPRINT_NAME = "run_fingerprint.json"
STAGING_DIR = ".tmp-checkpoints"
TRAINER_STATE_NAME = "trainer_state.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")

# What may change between a checkpoint and its resume without changing what the stage trains on: the order then
# continues by global position (`CPTTrainer` re-cuts the remaining blocks into the new batches).
ELASTIC_FIELDS = ("world_size", "per_device_train_batch_size", "gradient_accumulation_steps", "global_batch_size")
# CPTConfig fields that change which blocks come when.
DATA_ORDER_FIELDS = (
    "mixture_alpha",
    "mixture_importance",
    "mixture_round_steps",
    "mixture_round_tokens",
    "mixture_scope",
    "mixture_min_proportion",
    "curriculum_order",
    "curriculum_groups",
    "curriculum_num_groups",
    "curriculum_rescore_steps",
)
# Recorded, never compared: where the stage stands, and its plan (which moves with the batch's rounding).
_UNCOMPARED = ("planned_blocks", "trained_blocks")
# Blocks read to fingerprint the corpus's content: spread evenly, so a corpus of other documents differs.
_SAMPLED_BLOCKS = 64


# ---- the run's fingerprint ----
def corpus_fingerprint(dataset: Any) -> dict[str, Any] | None:
    """Rows, group names and sizes, and a hash of evenly spaced blocks' tokens: the same for the same corpus.

    Reads `_SAMPLED_BLOCKS` rows whatever the corpus's size, so it costs nothing at 100B tokens and still tells
    a corpus of other documents (or another tokenizer or block length) from this one.
    """
    if dataset is None or not hasattr(dataset, "__len__"):
        return None
    rows = len(dataset)
    digest = hashlib.blake2b(digest_size=12)
    columns = getattr(dataset, "column_names", None) or []
    if rows and "input_ids" in columns:
        step = max(1, rows // _SAMPLED_BLOCKS)
        for index in range(0, rows, step)[:_SAMPLED_BLOCKS]:
            digest.update(json.dumps(list(dataset[index]["input_ids"])).encode())
    feature = getattr(dataset, "features", {}).get("group") if hasattr(dataset, "features") else None
    return {"rows": rows, "groups": list(getattr(feature, "names", None) or []), "tokens_digest": digest.hexdigest()}


def run_fingerprint(args: Any, train_dataset: Any = None, sampler: Any = None) -> dict[str, Any]:
    """What fixes the data a stage trains on and its order, JSON-safe, as `run_fingerprint.json` holds it.

    Args:
        args: the stage's `CPTConfig` (or `TrainingArguments`; the fields it lacks are recorded as None).
        train_dataset: the packed training blocks.
        sampler: the stage's sampler; a `TopicMixtureSampler` adds its planned mixture (weights at position 0),
            planned blocks, seed and the blocks earlier stages drew.
    """
    world_size = int(getattr(args, "world_size", 1))
    per_device = int(args.per_device_train_batch_size)
    accumulation = int(args.gradient_accumulation_steps)
    fingerprint: dict[str, Any] = {
        "mixture": None,
        "corpus": corpus_fingerprint(train_dataset),
        "max_length": getattr(args, "max_length", None),
        "seed": args.seed,
        "world_size": world_size,
        "per_device_train_batch_size": per_device,
        "gradient_accumulation_steps": accumulation,
        "global_batch_size": per_device * accumulation * world_size,
        "planned_blocks": None,
        "sampler": None,
        "data_order": {field: _json_safe(getattr(args, field, None)) for field in DATA_ORDER_FIELDS},
    }
    history = getattr(sampler, "history", None)
    if history:
        fingerprint["mixture"] = {name: round(weight, 12) for name, weight in sorted(history[0][1].items())}
    if sampler is not None and hasattr(sampler, "state_dict") and hasattr(sampler, "num_samples"):
        state = sampler.state_dict()
        fingerprint["planned_blocks"] = int(sampler.num_samples)
        fingerprint["sampler"] = {"seed": state["seed"], "shuffle": state["shuffle"], "excluded": state["excluded"]}
    return fingerprint


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def write_fingerprint(folder: str | os.PathLike[str], fingerprint: Mapping[str, Any]) -> None:
    """Write `run_fingerprint.json` into `folder`, atomically."""
    from hf_cpt.utils.io import write_text_atomically

    write_text_atomically(Path(folder) / FINGERPRINT_NAME, json.dumps(fingerprint, indent=2, sort_keys=True))


def read_fingerprint(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The fingerprint a checkpoint or stage folder holds, or None (written before fingerprints existed)."""
    path = Path(folder) / FINGERPRINT_NAME
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def fingerprint_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """What differs between two fingerprints, one phrase per field (`seed 0 -> 1`, `mixture of web-en ...`)."""
    changes = []
    for field in sorted(set(saved) | set(current)):
        old, new = saved.get(field), current.get(field)
        if old == new:
            continue
        if field == "mixture" and isinstance(old, Mapping) and isinstance(new, Mapping):
            moved = sorted(name for name in set(old) | set(new) if old.get(name) != new.get(name))
            changes.append(f"mixture ({', '.join(moved[:4])}{' ...' if len(moved) > 4 else ''} changed)")
        elif field == "data_order" and isinstance(old, Mapping) and isinstance(new, Mapping):
            changes += [f"{name} {old.get(name)!r} -> {new.get(name)!r}" for name in sorted(old) if
                        old.get(name) != new.get(name)]  # fmt: skip
        elif field in ("corpus", "sampler"):
            changes.append("corpus (other documents or groups)" if field == "corpus" else "excluded earlier blocks")
        else:
            changes.append(f"{field} {old!r} -> {new!r}")
    return changes


def _compared(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a fingerprint that must match for a run to continue unchanged (not world size or batch)."""
    return {key: value for key, value in fingerprint.items() if key not in (*ELASTIC_FIELDS, *_UNCOMPARED)}


def check_resume(
    saved: Mapping[str, Any] | None, current: Mapping[str, Any], where: str, allow_changes: bool = False
) -> list[str]:
    """Refuse a resume whose run changed, in one sentence; return the elastic changes (world size, batch).

    Args:
        saved: the checkpoint's fingerprint (None: written before fingerprints; nothing to check).
        current: this run's fingerprint.
        where: the checkpoint folder, for the message.
        allow_changes: `CPTConfig.resume_on_mismatch`: warn instead of refusing.

    Returns:
        the changes the resume answers by continuing the order at the global position reached: the changed
        `ELASTIC_FIELDS` (world size, batch) and, with `allow_changes`, the others.
    """
    if saved is None:
        logger.warning("%s holds no run fingerprint (an older checkpoint); resuming without checking the run.", where)
        return []
    elastic = {field: saved.get(field) for field in ELASTIC_FIELDS}
    changed = fingerprint_changes(_compared(saved), _compared(current))
    if changed:
        sentence = (
            f"The run changed since {where} was written ({'; '.join(changed)}); set resume_on_mismatch=True to "
            "resume anyway (the data order continues at the position reached, an edited mixture applying from "
            "there, and the token budget holds), or start the stage afresh in a new output_dir."
        )
        if not allow_changes:
            raise ValueError(sentence)
        edited = any(change.startswith("mixture") for change in changed)
        logger.warning(
            "Resuming %s although the run changed (%s), as resume_on_mismatch asks: the data order continues at "
            "the position reached%s and the token budget holds.",
            where,
            "; ".join(changed),
            ", the edited mixture applying from there on (the blocks before it keep the weights they were drawn with)"
            if edited
            else "",
        )
    return fingerprint_changes(elastic, {field: current.get(field) for field in ELASTIC_FIELDS}) + changed


def check_finished_stage(
    stage_dir: str | os.PathLike[str], current: Mapping[str, Any], stage: str, allow_changes: bool = False
) -> None:
    """Before reusing a finished stage's folder: refuse (or, allowed, warn) when its config changed since.

    A stage whose folder holds its finished model is skipped on a rerun; if its mixture, corpus, seed or another
    field of the fingerprint was edited meanwhile, skipping it would report the old stage as the new one.
    World size and batch are left out: the finished model does not depend on how its batches were cut.
    """
    saved = read_fingerprint(stage_dir)
    if saved is None:
        logger.warning(
            "Stage %s in %s holds no run fingerprint; reusing it without checking its config.", stage, stage_dir
        )
        return
    changed = fingerprint_changes(_compared(saved), _compared(current))
    if not changed:
        return
    sentence = (
        f"Stage {stage} is finished in {stage_dir} but its config changed since ({'; '.join(changed)}); delete "
        "that folder (or set output_dir to a new one) to train the stage again, or set resume_on_mismatch=True to "
        "reuse the finished stage as it is."
    )
    if not allow_changes:
        raise ValueError(sentence)
    logger.warning(
        "Reusing finished stage %s in %s although its config changed (%s).", stage, stage_dir, "; ".join(changed)
    )


# ---- complete or ignored ----
def _safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file cannot be whole (its header or size), or None."""
    size = path.stat().st_size
    with open(path, "rb") as file:
        head = file.read(8)
        if len(head) < 8:
            return f"{path.name} is truncated ({size} bytes)"
        (header_size,) = struct.unpack("<Q", head)
        if 8 + header_size > size:
            return f"{path.name} is truncated (its header alone needs {8 + header_size} bytes, it has {size})"
        try:
            header = json.loads(file.read(header_size))
        except ValueError:
            return f"{path.name} has an unreadable header"
    end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
    if size != 8 + header_size + end:
        return f"{path.name} is truncated ({size} of {8 + header_size + end} bytes)"
    return None


def _torch_file_problem(path: Path) -> str | None:
    """Why a `torch.save` file (a zip archive) cannot be whole, or None."""
    return None if zipfile.is_zipfile(path) else f"{path.name} is truncated or not a torch file"


def _json_problem(path: Path) -> str | None:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return f"{path.name} is truncated or not JSON"
    return None


def _weights_problem(folder: Path) -> str | None:
    """Why the checkpoint's model weights are missing or broken, or None (sharded, PEFT, DeepSpeed, FSDP too)."""
    for index_name in ("model.safetensors.index.json", "adapter_model.safetensors.index.json"):
        index = folder / index_name
        if index.is_file():
            problem = _json_problem(index)
            if problem:
                return problem
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            for shard in shards:
                if not (folder / shard).is_file():
                    return f"weight shard {shard} is missing"
                problem = _safetensors_problem(folder / shard)
                if problem:
                    return problem
            return None
    for name in ("model.safetensors", "adapter_model.safetensors"):
        if (folder / name).is_file():
            return _safetensors_problem(folder / name)
    for name in ("pytorch_model.bin", "adapter_model.bin"):
        if (folder / name).is_file():
            return _torch_file_problem(folder / name)
    if any(folder.glob("global_step*")) or any(folder.glob("pytorch_model_fsdp*")):
        return None  # DeepSpeed / FSDP shards, checked by their engines
    return "the model weights are missing"


def checkpoint_problems(folder: str | os.PathLike[str]) -> list[str]:
    """Why a checkpoint folder cannot be resumed (empty list: complete).

    Checks the trainer state, the weights (sizes against their headers), the optimizer, scheduler and RNG files
    that are there, and hf-cpt's JSON files (data recipe, fingerprint).
    """
    folder = Path(folder)
    state = folder / TRAINER_STATE_NAME
    problems = [f"{TRAINER_STATE_NAME} is missing"] if not state.is_file() else []
    for path in [state, folder / "data_recipe.json", folder / FINGERPRINT_NAME]:
        if path.is_file():
            problems.append(_json_problem(path))
    problems.append(_weights_problem(folder))
    for path in sorted([*folder.glob("optimizer.pt"), *folder.glob("scheduler.pt"), *folder.glob("rng_state*.pth")]):
        problems.append(_torch_file_problem(path))
    return [problem for problem in problems if problem]


def checkpoint_warnings(folder: str | os.PathLike[str]) -> list[str]:
    """What a complete checkpoint lacks for an exact resume: optimizer or scheduler state (`save_only_model`)."""
    folder = Path(folder)
    engines = any(folder.glob("global_step*")) or any(folder.glob("optimizer_*"))
    missing = [name for name in ("optimizer.pt", "scheduler.pt") if not (folder / name).is_file()]
    return [] if engines else [f"{name} is missing" for name in missing]


def checkpoints(folder: str | os.PathLike[str]) -> list[Path]:
    """The `checkpoint-N` folders in `folder`, newest (highest N) first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(match[1]), path) for path in folder.iterdir() if (match := _CHECKPOINT.match(path.name))]
    return [path for _, path in sorted(found, reverse=True) if path.is_dir()]


def last_complete_checkpoint(folder: str | os.PathLike[str], before: int | None = None) -> Path | None:
    """The newest complete checkpoint in `folder` (below step `before`), warning about each incomplete one."""
    for path in checkpoints(folder):
        if before is not None and int(_CHECKPOINT.match(path.name)[1]) >= before:
            continue
        problems = checkpoint_problems(path)
        if not problems:
            return path
        logger.warning("Skipping incomplete checkpoint %s (%s); trying the one before it.", path, "; ".join(problems))
    return None


def resolve_checkpoint(resume_from_checkpoint: str | os.PathLike[str] | bool | None, output_dir: str) -> str | None:
    """The checkpoint to resume from: the given one if complete, else the newest complete one before it.

    `True` means the newest in `output_dir` (as `Trainer` reads it). With no complete checkpoint at all, the
    stage starts from the beginning, with a warning; `True` with no checkpoint folder at all is an error.
    """
    if resume_from_checkpoint is None or resume_from_checkpoint is False:
        return None
    if resume_from_checkpoint is True:
        newest = checkpoints(output_dir)
        if not newest:
            raise ValueError(
                f"resume_from_checkpoint is True but {output_dir} holds no checkpoint-N folder; train without "
                "resume_from_checkpoint, or point output_dir at the run to resume."
            )
        found = last_complete_checkpoint(output_dir)
        fell_back = found != newest[0]
        where = output_dir
    else:
        path = Path(resume_from_checkpoint)
        if not path.is_dir():
            raise FileNotFoundError(
                f"resume_from_checkpoint {str(path)!r} is not a folder; give a checkpoint-N folder or True."
            )
        problems = checkpoint_problems(path)
        fell_back = bool(problems)
        if not problems:
            found = path
        else:
            match = _CHECKPOINT.match(path.name)
            logger.warning("Checkpoint %s is incomplete (%s).", path, "; ".join(problems))
            found = last_complete_checkpoint(path.parent, before=int(match[1])) if match else None
        where = str(path.parent)
    if found is None:
        logger.warning("No complete checkpoint in %s; training starts from the beginning.", where)
        return None
    if fell_back:
        logger.warning("Resuming from %s, the newest complete checkpoint.", found)
    return str(found)

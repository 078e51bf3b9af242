"""Pushing what hf-cpt makes (synthetic datasets, labelled corpora, trained models) to the Hugging Face Hub.

Every push goes the same way: the files to upload are staged into one folder (hard links where the
file system allows, so a large dataset is not copied), and that very folder is uploaded with
`huggingface_hub.HfApi.upload_folder`. A dry run stops after staging and returns the folder, so what a
dry run shows is exactly what a real push sends. Transient Hub errors (429, 5xx, dropped connections)
are retried a bounded number of times with exponential backoff (`hf_cpt.utils.retry`).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hf_cpt.utils.retry import Backoff, retry, retry_after_seconds

logger = logging.getLogger(__name__)

_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


def resolve_token(token: str | None = None) -> str:
    """The token to push with: the argument, else `HF_TOKEN`, else the one `hf auth login` stored."""
    from huggingface_hub import get_token

    token = token or os.environ.get("HF_TOKEN") or get_token()
    if not token:
        raise ValueError("No Hugging Face token found; set HF_TOKEN, run `hf auth login`, or pass token=.")
    return token


def stage_folder(folder: str | os.PathLike[str], include: Sequence[str], staging: str | os.PathLike[str]) -> Path:
    """Put the files of `folder` matching the `include` patterns (relative paths) into a fresh `staging` folder."""
    folder, staging = Path(folder), Path(staging)
    if staging.exists():
        shutil.rmtree(staging)
    files = [
        path
        for path in sorted(folder.rglob("*"))
        if path.is_file() and any(fnmatch.fnmatch(str(path.relative_to(folder)), pattern) for pattern in include)
    ]
    if not files:
        raise ValueError(f"Nothing in {folder} matches {list(include)}; write the files before pushing them.")
    for path in files:
        target = staging / path.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:  # another file system, or links not allowed
            shutil.copy2(path, target)
    return staging


def _retry_after(error: Exception) -> float | None:
    """The Retry-After of the Hub's answer, in seconds, when it sent one."""
    headers = getattr(getattr(error, "response", None), "headers", None) or {}
    return retry_after_seconds(headers.get("Retry-After"))


def _is_transient(error: Exception) -> bool:
    """A 408, 429 or 5xx answer or a dropped connection; never offline mode, which no retry can change."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    if isinstance(error, OfflineModeIsEnabled):
        return False
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    if status is not None:
        return status in _TRANSIENT_STATUS
    # No HTTP answer at all: a dropped connection or a time-out (the Hub client's errors are OSErrors too).
    return isinstance(error, OSError) and not isinstance(error, (FileNotFoundError, PermissionError))


def with_retries(call: Callable[[], Any], tries: int = 5, backoff: float = 2.0, sleep=time.sleep) -> Any:
    """`call()`, tried again after transient errors (429, 5xx, connection), at most `tries` times.

    Waits double from `backoff` seconds (at most a minute), or follow the Hub's Retry-After when it sends one.
    """

    def log(attempt: int, delay: float, error: Exception) -> None:
        logger.warning("Hub call failed (%s); trying again in %.0f s (%d of %d).", error, delay, attempt, tries)

    return retry(
        lambda attempt: call(),
        tries=tries,
        backoff=Backoff(base=backoff, max_delay=60.0, jitter=0.0),
        retryable=_is_transient,
        retry_after=_retry_after,
        on_retry=log,
        sleep=sleep,
    )


def push_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    repo_type: str,
    include: Sequence[str],
    token: str | None = None,
    private: bool = False,
    dry_run: bool = False,
    commit_message: str = "Upload with hf-cpt",
    staging: str | os.PathLike[str] | None = None,
) -> Path | Any:
    """Stage `folder`'s files matching `include` and upload that staged folder to `repo_id`.

    Args:
        repo_type: `dataset` or `model`.
        staging: where to stage; default `<folder>.hub` beside the folder.
        dry_run: stage only, and return the staged folder (no token needed, nothing sent).

    Returns:
        the staged folder for a dry run, else the `CommitInfo` of the upload.
    """
    folder = Path(folder)
    staged = stage_folder(folder, include, staging or folder.with_name(folder.name + ".hub"))
    if dry_run:
        logger.info("Dry run: %s holds what would be pushed to %s (%s).", staged, repo_id, repo_type)
        return staged
    from huggingface_hub import HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled

    api = HfApi(token=resolve_token(token))
    try:
        with_retries(lambda: api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True))
        commit = with_retries(
            lambda: api.upload_folder(
                repo_id=repo_id, folder_path=str(staged), repo_type=repo_type, commit_message=commit_message
            )
        )
    except OfflineModeIsEnabled as error:
        raise ValueError(
            f"HF_HUB_OFFLINE is set, so nothing can be pushed to {repo_id}; unset HF_HUB_OFFLINE to push, or stage "
            "the upload only with a dry run."
        ) from error
    logger.info("Pushed %s to %s (%s).", staged, repo_id, repo_type)
    return commit


CARD_TAGS = ("continual-pretraining", "hf-cpt", "llama3-syne")  # on every CPT model card
MODEL_FILES = ("*.safetensors", "*.json", "*.jinja", "*.model", "*.txt", "README.md")


def model_card(
    *,
    base_model: str,
    recipe: Mapping[str, Mapping[str, Any]],
    evaluation: Mapping[str, Mapping[str, Any]] | None = None,
    mixture: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    curriculum: Mapping[str, Mapping[str, Any] | None] | None = None,
    model_name: str | None = None,
    tags: Sequence[str] = (),
    language: str | Sequence[str] | None = None,
    license: str | None = None,
    datasets: str | Sequence[str] | None = None,
) -> str:
    """A Hub model card for a continually pre-trained model: what it started from and what it was fed.

    Rendered from `templates/cpt_model_card.md`.

    Args:
        base_model: the model CPT started from (a Hub id goes into the metadata; a local folder only into the text).
        recipe: per stage, the trainer's data recipe (`data_recipe.json`: tokens and ratios per source).
        evaluation: `{"before": result, "after": result}` (`EvaluationResult.to_dict()`), or `{"after": ...}`.
        mixture: per stage, the topic mixture's rounds (`topic_mixture.json`).
        curriculum: per stage, the curriculum's progress (`curriculum.json`).
        model_name: the card's title; default "<base_model>, continually pre-trained with hf-cpt".
        tags, language, license, datasets: more metadata (hf-cpt's own tags are always there).
    """
    from huggingface_hub import ModelCardData

    from hf_cpt.cards import render_card
    from hf_cpt.evaluation import comparison_table, forgetting_report

    evaluation_table = None
    if evaluation and evaluation.get("before") is not None:
        evaluation_table = forgetting_report(evaluation["before"], evaluation["after"])
    elif evaluation:
        evaluation_table = comparison_table(evaluation["after"])
    card_data = ModelCardData(
        base_model=None if os.path.isdir(base_model) else base_model,
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=list(dict.fromkeys([*CARD_TAGS, *tags])),
        language=language,
        license=license,
        datasets=datasets,
    )
    return render_card(
        "cpt_model_card.md",
        card_data,
        base_model=base_model,
        model_name=model_name,
        tokens=sum(stage["tokens_consumed"] for stage in recipe.values()),
        recipe=recipe,
        mixture=mixture or {},
        curriculum=curriculum or {},
        evaluation_table=evaluation_table,
        evaluation_before=bool(evaluation and evaluation.get("before") is not None),
    )


def push_model(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    dry_run: bool = False,
) -> Path | Any:
    """Upload a saved model folder (weights, config, tokenizer, `data_recipe.json`, its card `README.md`)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} holds no saved model (no config.json); give the folder save_pretrained wrote.")
    if not (folder / "README.md").is_file():
        raise ValueError(
            f"{folder} has no model card (README.md); write one with CPTTrainer.create_model_card or "
            "hf_cpt.hub.model_card first."
        )
    return push_folder(
        folder, repo_id, repo_type="model", include=MODEL_FILES, token=token, private=private, dry_run=dry_run,
        commit_message="Upload continually pre-trained model (hf-cpt)",
    )  # fmt: skip

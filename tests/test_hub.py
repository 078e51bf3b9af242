"""Model cards, Hub pushes (dry run, and the upload intercepted: no network here), retries, `hf-cpt eval/push`."""

import json
from types import SimpleNamespace

import pytest

from hf_cpt.cli import main
from hf_cpt.hub import model_card, push_model, with_retries

RECIPE = {
    "stage1": {
        "tokens_consumed": 49152,
        "global_step": 24,
        "sources": {
            "web-en": {"target_ratio": 0.32, "tokens_consumed": 15616, "consumed_ratio": 0.3177},
            "web-cn": {"target_ratio": 0.14, "tokens_consumed": 6912, "consumed_ratio": 0.1406},
        },
    }
}
ROUNDS = [
    {"round": 0, "step": 0, "proportions": {"web-en/Law": 0.5, "web-en/Math": 0.5}},
    {"round": 1, "step": 8, "proportions": {"web-en/Law": 0.6, "web-en/Math": 0.4}},
]
CURRICULUM = {"order": "LH", "num_difficulty_groups": 10, "topics": ["web-cn/Philosophy"], "progress": []}
BEFORE = {"model": "m", "scores": {"mmlu": 66.6, "bilingual_en": 40.0}, "num_fewshot": {}, "limit": None}
AFTER = {"model": "m", "scores": {"mmlu": 64.0, "bilingual_en": 45.0}, "num_fewshot": {}, "limit": None}


def test_the_model_card_states_base_model_data_recipe_mixture_curriculum_and_scores():
    card = model_card(
        base_model="meta-llama/Meta-Llama-3-8B",
        recipe=RECIPE,
        evaluation={"before": BEFORE, "after": AFTER},
        mixture={"stage1": ROUNDS},
        curriculum={"stage1": CURRICULUM},
    )
    assert card.startswith("---\nbase_model: meta-llama/Meta-Llama-3-8B\n")
    assert "continued pre-training on 49,152 tokens in 1 stage(s)" in card
    assert "| web-en | 0.3200 | 15,616 | 0.3177 |" in card
    assert "Topic mixture: 1 re-weighting round(s); final shares: web-en/Law 0.600, web-en/Math 0.400." in card
    assert "Curriculum: order `LH` in 10 groups over web-cn/Philosophy." in card
    mmlu = next(line for line in card.splitlines() if line.startswith("| MMLU"))
    assert "66.60" in mmlu and "64.00" in mmlu and "-2.60" in mmlu and "drop" in mmlu
    assert "arXiv:2407.18743" in card


def test_a_local_base_model_is_named_in_the_text_and_left_out_of_the_metadata(tmp_path):
    card = model_card(base_model=str(tmp_path), recipe=RECIPE, model_name="my-cpt-model")
    assert card.startswith("---\nlibrary_name: transformers\n") and "base_model" not in card.split("---")[1]
    assert "# my-cpt-model\n" in card and f"`{tmp_path}` continued pre-training on 49,152 tokens" in card


def saved_model(folder, card=True):
    folder.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "data_recipe.json"):
        (folder / name).write_text("{}")
    (folder / "checkpoint-8").mkdir()
    (folder / "checkpoint-8" / "optimizer.pt").write_text("not uploaded")
    if card:
        (folder / "README.md").write_text("card")
    return folder


def test_a_model_push_uploads_exactly_the_folder_its_dry_run_staged(tmp_path, monkeypatch):
    folder = saved_model(tmp_path / "final_model")
    staged = push_model(folder, "me/cpt", dry_run=True)
    files = sorted(str(path.relative_to(staged)) for path in staged.rglob("*") if path.is_file())
    assert files == ["README.md", "config.json", "data_recipe.json", "model.safetensors", "tokenizer.json"]
    calls = []

    class FakeApi:  # the Hub client, intercepted: this machine has no network
        def __init__(self, token):
            calls.append(("token", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs["repo_type"], kwargs["private"]))

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs["repo_id"], kwargs["folder_path"]))
            return "commit"

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    assert push_model(folder, "me/cpt", private=True) == "commit"
    assert calls == [
        ("token", "hf_x"),
        ("create_repo", "me/cpt", "model", True),
        ("upload_folder", "me/cpt", str(staged)),
    ]


def test_push_errors_say_what_to_fix(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="holds no saved model \\(no config.json\\)"):
        push_model(tmp_path, "me/cpt")
    with pytest.raises(ValueError, match="has no model card \\(README.md\\)"):
        push_model(saved_model(tmp_path / "bare", card=False), "me/cpt")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    with pytest.raises(ValueError, match="No Hugging Face token found; set HF_TOKEN, run `hf auth login`"):
        push_model(saved_model(tmp_path / "model"), "me/cpt")


def http_error(status):
    error = OSError(f"HTTP {status}")
    error.response = SimpleNamespace(status_code=status)
    return error


def test_transient_hub_errors_are_retried_a_bounded_number_of_times_and_others_are_not():
    attempts, waits = [], []

    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise http_error(503)
        return "done"

    assert with_retries(flaky, tries=5, backoff=1.0, sleep=waits.append) == "done"
    assert waits == [1.0, 2.0]
    attempts.clear()
    with pytest.raises(OSError, match="HTTP 401"):
        with_retries(lambda: attempts.append(1) or (_ for _ in ()).throw(http_error(401)), sleep=waits.append)
    assert len(attempts) == 1
    attempts.clear()
    with pytest.raises(OSError, match="HTTP 429"):
        with_retries(lambda: attempts.append(1) or (_ for _ in ()).throw(http_error(429)), tries=3, sleep=lambda s: 0)
    assert len(attempts) == 3


def test_hub_retries_wait_as_long_as_the_hubs_retry_after_asks():
    attempts, waits = [], []

    def rate_limited():
        attempts.append(1)
        if len(attempts) == 1:
            error = http_error(429)
            error.response.headers = {"Retry-After": "7"}
            raise error
        return "done"

    assert with_retries(rate_limited, tries=3, backoff=1.0, sleep=waits.append) == "done"
    assert waits == [7.0]  # the backoff alone would have waited 1 s


def test_eval_command_writes_scores_and_the_report_against_a_baseline(tmp_path, tiny_model_path, capsys):
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({**BEFORE, "scores": {"bilingual_en": 90.0, "bilingual_zh": 10.0}}))
    main(["eval", tiny_model_path, "--limit", "2", "--output", str(tmp_path / "out"), "--baseline", str(baseline)])
    result = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert set(result["scores"]) == {"bilingual_en", "bilingual_zh"}
    text = (tmp_path / "out" / "evaluation.md").read_text()
    english = next(line for line in text.splitlines() if line.startswith("| hf-cpt bilingual (en)") and "90.00" in line)
    assert f"{result['scores']['bilingual_en'] - 90:+.2f}" in english and "drop" in english
    assert "## Against the baseline" in capsys.readouterr().out


def test_push_command_dry_run_stages_the_model_folder(tmp_path, capsys):
    folder = saved_model(tmp_path / "final_model")
    main(["push", str(folder), "me/cpt", "--dry-run"])
    assert f"Dry run: {tmp_path / 'final_model.hub'} holds exactly what would be uploaded" in capsys.readouterr().out
    assert (tmp_path / "final_model.hub" / "model.safetensors").is_file()
    assert not (tmp_path / "final_model.hub" / "checkpoint-8").exists()

"""hf_cpt.evaluation: the paper's suites, running lm-eval on local tasks, reports, the callback."""

from __future__ import annotations

import json
import re
import sys

import pytest
import torch
from conftest import make_model, make_tokenizer
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from hf_cpt.evaluation import (
    BENCHMARKS,
    SUITES,
    TASKS_DIR,
    Benchmark,
    EvaluationCallback,
    EvaluationResult,
    comparison_table,
    evaluate,
    forgetting_report,
)

# A handful of questions over the tiny tokenizer's vocabulary (one token per word).
TINY_QUESTIONS = [
    ("g0w1 g0w2 g0w3", ["g1w1", "g1w2", "g1w3", "g1w4"], 0),
    ("g0w4 g0w5", ["g2w1", "g2w2", "g2w3", "g2w4"], 1),
    ("g0w6 g0w7 g0w8 g0w9", ["g3w1", "g3w2 g3w3", "g3w4", "g3w5"], 2),
    ("g0w10", ["g4w1", "g4w2", "g4w3", "g4w4 g4w5"], 3),
    ("g0w11 g0w12", ["g1w10", "g1w11", "g1w12", "g1w13"], 2),
    ("g0w13 g0w14 g0w15", ["g2w10 g2w11", "g2w12", "g2w13", "g2w14"], 0),
    ("g0w16", ["g3w10", "g3w11", "g3w12", "g3w13"], 1),
    ("g0w17 g0w18", ["g4w10", "g4w11", "g4w12", "g4w13"], 3),
]
TINY_TASK = Benchmark("tiny_mc", "Tiny MC", "custom", 0, "tiny_mc", "acc,none")


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory):
    """A local multiple-choice task (`tiny_mc`) in its own folder, to pass as include_path.

    One folder for the module, so that evaluations share one (cached) task index.
    """
    folder = tmp_path_factory.mktemp("tasks")
    data = folder / "tiny.jsonl"
    data.write_text(
        "".join(json.dumps({"question": q, "choices": c, "answer": a}) + "\n" for q, c, a in TINY_QUESTIONS)
    )
    (folder / "tiny_mc.yaml").write_text(
        f"""task: tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
output_type: multiple_choice
test_split: test
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
target_delimiter: " "
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""
    )
    return folder


@pytest.fixture(scope="module")
def tiny_model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    tokenizer = make_tokenizer(folder)
    make_model(len(tokenizer), seed=3).save_pretrained(folder)
    return folder


def hand_accuracy(model, tokenizer) -> float:
    """Accuracy (percent) by hand: argmax over choices of the summed log-likelihood of the choice tokens."""
    correct = 0
    with torch.no_grad():
        for question, choices, answer in TINY_QUESTIONS:
            context = tokenizer(question)["input_ids"]
            totals = []
            for choice in choices:
                ids = tokenizer(question + " " + choice)["input_ids"]
                logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
                totals.append(sum(logprobs[i - 1, ids[i]].item() for i in range(len(context), len(ids))))
            correct += int(max(range(len(choices)), key=totals.__getitem__) == answer)
    return 100.0 * correct / len(TINY_QUESTIONS)


def test_local_task_accuracy_equals_the_hand_computed_log_likelihood_argmax(tiny_task, tiny_model_folder, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = evaluate(
        str(tiny_model_folder), [TINY_TASK], batch_size=4, include_path=str(tiny_task), output_dir=tmp_path / "out"
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_model_folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_folder)
    assert result.scores["tiny_mc"] == pytest.approx(hand_accuracy(model, tokenizer))
    assert result.num_fewshot == {"tiny_mc": 0}
    saved = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert saved["scores"]["tiny_mc"] == pytest.approx(result.scores["tiny_mc"])


def test_a_loaded_model_object_gives_the_same_accuracy_as_its_folder(tiny_task, tiny_model_folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_folder)
    result = evaluate(model, [TINY_TASK], tokenizer=tokenizer, batch_size=3, include_path=str(tiny_task))
    assert result.scores["tiny_mc"] == pytest.approx(hand_accuracy(model, tokenizer))


PAPER_SHOTS = {
    # §4.1: 8-shot GSM8K, ASDiv, MAWPS; 5-shot C-Eval, CMMLU, MMLU, MATH, GaoKao, SciQ, SciEval,
    # SAT-Math, AQUA-RAT; 3-shot MBPP; 0-shot HumanEval and ARC.
    "major": {
        "mmlu": 5,
        "ceval": 5,
        "cmmlu": 5,
        "math": 5,
        "gsm8k": 8,
        "asdiv": 8,
        "mawps": 8,
        "sat_math": 5,
        "humaneval": 0,
        "mbpp": 3,
    },
    "scientific": {
        "scieval": 5,
        "sciq": 5,
        "gaokao_mathqa": 5,
        "gaokao_chemistry": 5,
        "gaokao_biology": 5,
        "arc_easy": 0,
        "arc_challenge": 0,
        "aqua_rat": 5,
    },
}


@pytest.mark.parametrize("suite", ["major", "scientific"])
def test_suites_hold_the_papers_benchmarks_at_the_papers_shot_counts(suite):
    assert {name: BENCHMARKS[name].num_fewshot for name in SUITES[suite]} == PAPER_SHOTS[suite]


def test_paper_scores_are_those_of_tables_5_and_6():
    table = {name: tuple(b.paper_scores.values()) for name, b in BENCHMARKS.items() if b.paper_scores}
    assert table == {
        "mmlu": (66.60, 65.19),
        "ceval": (49.43, 58.24),
        "cmmlu": (51.03, 57.34),
        "math": (16.20, 28.20),
        "gsm8k": (54.40, 60.80),
        "asdiv": (72.10, 81.00),
        "mawps": (89.30, 94.10),
        "sat_math": (38.64, 43.64),
        "humaneval": (36.59, 42.07),
        "mbpp": (47.00, 45.60),
        "scieval": (65.47, 69.60),
        "sciq": (90.90, 91.20),
        "gaokao_mathqa": (27.92, 31.05),
        "gaokao_chemistry": (32.85, 51.21),
        "gaokao_biology": (43.81, 69.52),
        "arc_easy": (91.37, 91.58),
        "arc_challenge": (77.73, 80.97),
        "aqua_rat": (27.95, 28.74),
    }
    assert {k: tuple(v.values()) for k, v in BENCHMARKS["scieval"].paper_breakdown.items()} == {
        "PHY": (46.95, 53.66),
        "CHE": (63.45, 67.81),
        "BIO": (74.53, 77.45),
    }


def test_every_benchmark_resolves_to_an_lm_eval_task_or_a_shipped_yaml():
    from lm_eval.tasks import TaskManager

    index = TaskManager(include_path=str(TASKS_DIR)).task_index
    for benchmark in BENCHMARKS.values():
        assert benchmark.task in index, benchmark.name
        assert index[benchmark.task].yaml_path.is_relative_to(TASKS_DIR) == benchmark.shipped, benchmark.name
    assert {"hfcpt_bilingual", "hfcpt_scieval_physics", "hfcpt_scieval_chemistry"} <= set(index)


def test_bundled_questions_are_well_formed_and_bilingual():
    for language, minimum in (("en", 40), ("zh", 40)):
        rows = [json.loads(line) for line in (TASKS_DIR / "hfcpt_bilingual" / f"{language}.jsonl").open()]
        assert len(rows) >= minimum
        for row in rows:
            assert set(row) == {"question", "choices", "answer", "subject", "language"}
            assert len(row["choices"]) == 4 and row["answer"] in range(4) and row["language"] == language
        assert len({row["question"] for row in rows}) == len(rows)


def test_comparison_table_puts_scores_beside_the_papers_columns():
    result = EvaluationResult(scores={"ceval": 50.5, "bilingual_en": 61.0}, num_fewshot={"ceval": 5})
    lines = comparison_table(result).splitlines()
    assert lines[0] == "| Benchmark | Shots | This model | Llama-3-8B (paper) | Llama-3-SynE (paper) |"
    assert lines[2] == "| C-Eval | 5 | 50.50 | 49.43 | 58.24 |"
    assert lines[3] == "| hf-cpt bilingual (en) | 0 | 61.00 | – | – |"


def test_forgetting_report_flags_drops_beyond_the_threshold():
    before = EvaluationResult(scores={"mmlu": 66.60, "ceval": 49.43, "sciq": 90.0})
    after = {"scores": {"mmlu": 65.19, "ceval": 58.24, "sciq": 89.5}}
    lines = forgetting_report(before, after).splitlines()
    assert lines[2] == "| MMLU | 66.60 | 65.19 | -1.41 | ⚠ drop |"
    assert lines[3] == "| C-Eval | 49.43 | 58.24 | +8.81 |  |"
    assert lines[4] == "| SciQ | 90.00 | 89.50 | -0.50 |  |"
    assert "⚠ drop" in forgetting_report(before, after, threshold=0.4).splitlines()[4]
    assert "⚠ drop" not in forgetting_report(before, after, threshold=2.0)


def with_errors(scores: dict[str, tuple[float, float]]) -> EvaluationResult:
    """A result as the runner builds it: lm-eval's accuracy and its standard error per benchmark."""
    return EvaluationResult(
        scores={name: score for name, (score, _) in scores.items()},
        metrics={name: {"acc,none": score, "acc_stderr,none": error} for name, (score, error) in scores.items()},
    )


def test_forgetting_report_marks_a_change_within_two_standard_errors_as_not_significant():
    before = with_errors({"mmlu": (66.60, 1.20), "ceval": (49.43, 0.50), "sciq": (90.00, 0.30)})
    after = with_errors({"mmlu": (65.19, 1.30), "ceval": (58.24, 0.50), "sciq": (85.00, 0.30)})
    lines = forgetting_report(before, json.loads(json.dumps(after.to_dict()))).splitlines()
    # -1.41 against 2 × hypot(1.20, 1.30) = 3.54: noise, so no drop flag although it passes the threshold.
    assert lines[2] == "| MMLU | 66.60 ± 1.20 | 65.19 ± 1.30 | -1.41 ± 1.77 | not significant |"
    assert lines[3] == "| C-Eval | 49.43 ± 0.50 | 58.24 ± 0.50 | +8.81 ± 0.71 |  |"
    assert lines[4] == "| SciQ | 90.00 ± 0.30 | 85.00 ± 0.30 | -5.00 ± 0.42 | ⚠ drop |"


def test_standard_errors_come_from_the_metric_lm_eval_reports_beside_the_score():
    result = with_errors({"sciq": (90.0, 0.3)})
    assert result.standard_error("sciq") == 0.3
    assert EvaluationResult(scores={"sciq": 90.0}).standard_error("sciq") is None
    assert comparison_table(result).splitlines()[2] == "| SciQ | 5 | 90.00 ± 0.30 | 90.90 | 91.20 |"


def test_result_round_trips_through_json_with_nan_as_null():
    result = EvaluationResult(scores={"mmlu": float("nan"), "sciq": 90.0}, metrics={"sciq": {"acc,none": 90.0}})
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["scores"] == {"mmlu": None, "sciq": 90.0}
    assert EvaluationResult.from_dict(data).scores["sciq"] == 90.0


def test_missing_lm_eval_names_the_install_command(monkeypatch, tiny_model_folder):
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    message = 'lm-eval is not installed; install it with `pip install "hf-cpt[eval]"`.'
    with pytest.raises(ImportError, match=f"^{re.escape(message)}$"):
        evaluate(str(tiny_model_folder), "bundled")


def test_unknown_benchmark_lists_the_known_names():
    with pytest.raises(ValueError, match="Unknown benchmark 'mmmlu'; choose a suite .*major.* or a benchmark .*ceval"):
        evaluate("unused", ["mmlu", "mmmlu"])


def test_missing_model_folder_is_one_clear_sentence(tmp_path):
    with pytest.raises(FileNotFoundError, match="Model folder '.*nowhere' does not exist; pass the folder"):
        evaluate(str(tmp_path / "nowhere"), "bundled")


def test_code_benchmarks_need_an_explicit_opt_in(tiny_model_folder):
    with pytest.raises(ValueError, match="HumanEval and MBPP execute model-written code; pass allow_code_execution"):
        evaluate(str(tiny_model_folder), "major")


def test_callback_logs_scores_at_train_end(tiny_task, tmp_path):
    tokenizer = make_tokenizer(tmp_path / "tokenizer")
    model = make_model(len(tokenizer))
    rows = [{"input_ids": list(range(3, 19)), "labels": list(range(3, 19))} for _ in range(8)]
    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=str(tmp_path / "run"),
            max_steps=2,
            per_device_train_batch_size=4,
            use_cpu=True,
            report_to="none",
            save_strategy="no",
        ),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    callback = EvaluationCallback([TINY_TASK], trainer=trainer, include_path=str(tiny_task))
    trainer.add_callback(callback)
    trainer.train()
    assert model.training, "the callback must restore training mode"
    assert len(callback.results) == 1 and callback.results[0]["step"] == 2
    score = callback.results[0]["scores"]["tiny_mc"]
    assert score == pytest.approx(hand_accuracy(model.eval(), tokenizer))
    assert trainer.state.log_history[-1]["eval/tiny_mc"] == pytest.approx(score)


def test_callback_every_steps_needs_eval_steps():
    with pytest.raises(ValueError, match="eval_steps must be a positive integer when every='steps'"):
        EvaluationCallback(every="steps")


@pytest.mark.slow
def test_bundled_benchmark_on_the_embedded_model_gives_english_and_chinese_accuracy():
    from hf_cpt.modeling import embedded_model_path

    result = evaluate(str(embedded_model_path()), "bundled", limit=8, batch_size=8)
    assert set(result.scores) == {"bilingual_en", "bilingual_zh"}
    assert all(0.0 <= score <= 100.0 for score in result.scores.values())

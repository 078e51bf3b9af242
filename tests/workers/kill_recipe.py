"""Worker for the kill-moment tests: the recipe (`recipes/llama3_syne.py`) killed with SIGKILL at a chosen moment.

    python kill_recipe.py CONFIG

Environment:
    HF_CPT_TEST_KILL_AT=<moment>:<count>  kill this process with SIGKILL at the count-th time (1-based, counted
        over the whole run, every stage) that the moment comes:
        step             inside a training step: after its forward and backward, before the optimizer step;
        mixture_eval     inside the topic mixture's per-topic validation perplexity (round 0 is the first),
                         at its first forward pass;
        scoring          inside the curriculum's perplexity scoring of training blocks, at the start of a shard
                         (its initial scoring and every re-scoring count);
        model_saved      once a model's weights are written into a folder that is not a checkpoint: a stage's
                         own folder (its finished model, before its data recipe) or the recipe's `final_model/`;
        report           in `write_run_report`, once `validation_perplexity.json` and the loss plot are written;
        annotation       once an LLM topic annotation's answer is recorded (made durable) in its record log;
        labelling        as a trained topic classifier starts labelling a split of its source.

The kill happens once: a marker file `CONFIG.killed` is written just before it, and a rerun of the very same
command (same environment) runs to the end. The patches are here, not in the package: it carries no test hooks.
Every run, killed or not, scores the curriculum in shards of `SCORING_SHARD_SIZE` blocks, so that a kill during
scoring leaves finished shards behind.
"""

import functools
import os
import runpy
import signal
import sys
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "llama3_syne.py"
SCORING_SHARD_SIZE = 4


def main(config: Path) -> None:
    from transformers import PreTrainedModel

    import hf_cpt.curriculum.callback as curriculum_callback
    import hf_cpt.curriculum.scoring as scoring
    import hf_cpt.mixture.callback as mixture_callback
    import hf_cpt.reporting as reporting
    import hf_cpt.topics.relabel as relabel
    from hf_cpt.trainer import CPTTrainer
    from hf_cpt.utils.records import RecordWriter

    curriculum_callback.score_perplexity = functools.partial(
        curriculum_callback.score_perplexity, shard_size=SCORING_SHARD_SIZE
    )
    moment, _, count = os.environ.get("HF_CPT_TEST_KILL_AT", "").partition(":")
    marker = Path(f"{config}.killed")
    seen = {"count": 0}

    def due() -> bool:
        """Whether this coming of the moment is the one to kill at (once per marker)."""
        seen["count"] += 1
        return seen["count"] == int(count) and not marker.exists()

    def kill() -> None:
        marker.write_text(f"{moment}:{count}")
        os.kill(os.getpid(), signal.SIGKILL)

    def wrap(owner, name, before=None, after=None):
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            if before is not None:
                before(*args, **kwargs)
            result = original(*args, **kwargs)
            if after is not None:
                after(*args, **kwargs)
            return result

        setattr(owner, name, wrapper)

    if moment == "step":
        wrap(CPTTrainer, "training_step", after=lambda *args, **kwargs: due() and kill())
    elif moment == "mixture_eval":

        def kill_at_first_forward(model, *args, **kwargs):
            if due():
                model.register_forward_hook(lambda *hook_args: kill())

        wrap(mixture_callback, "perplexity_by_group", before=kill_at_first_forward)
    elif moment == "scoring":
        wrap(scoring, "_score_shard", before=lambda *args, **kwargs: due() and kill())
    elif moment == "model_saved":

        def kill_after_weights(model, save_directory, *args, **kwargs):
            if not Path(save_directory).name.startswith("checkpoint-") and due():
                kill()

        wrap(PreTrainedModel, "save_pretrained", after=kill_after_weights)
    elif moment == "report":
        wrap(reporting, "plot_group_perplexity", before=lambda *args, **kwargs: due() and kill())
    elif moment == "annotation":
        wrap(RecordWriter, "write", after=lambda *args, **kwargs: due() and kill())
    elif moment == "labelling":
        wrap(relabel, "label_topics", before=lambda *args, **kwargs: due() and kill())
    elif moment:
        raise ValueError(f"HF_CPT_TEST_KILL_AT names moment {moment!r}; see this script's docstring.")
    runpy.run_path(str(RECIPE))["main"](["--config", str(config)])


if __name__ == "__main__":
    main(Path(sys.argv[1]))

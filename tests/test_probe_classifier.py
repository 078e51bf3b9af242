"""The probe topic classifier (`model: lm-probe`): a softmax regression on a frozen causal LM's mean hidden state."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import group_vocabulary
from datasets import Dataset

from hf_cpt.topics.classifier import train_topic_classifier
from hf_cpt.topics.labeling import label_topics
from hf_cpt.topics.probe_classifier import ProbeClassifier, train_probe_classifier
from hf_cpt.topics.taxonomy import Taxonomy

TAXONOMY = Taxonomy("toy", "en", ("First", "Second"))


def group_documents(per_topic: int, seed: int) -> Dataset:
    """Documents of 4 to 9 words of one vocabulary group of the test tokenizer each, topic = the group."""
    rng = np.random.default_rng(seed)
    texts, topics = [], []
    for _ in range(per_topic):
        for index, topic in enumerate(TAXONOMY.topics):
            texts.append(" ".join(rng.choice(group_vocabulary(index), size=int(rng.integers(4, 10)))))
            topics.append(topic)
    return Dataset.from_dict({"text": texts, "topic": topics})


@pytest.fixture(scope="module")
def probe_folder(tmp_path_factory, tiny_model_path):
    folder = tmp_path_factory.mktemp("probe")
    documents = group_documents(16, seed=0)
    report = train_probe_classifier(documents, TAXONOMY, folder, test_size=0.25, encoder=tiny_model_path, l2=1e-4)
    return folder, report


def test_it_learns_topics_from_the_frozen_lm_and_writes_a_folder_without_the_lm(probe_folder, tiny_model_path):
    folder, report = probe_folder
    # A random tiny LM's states still tell the two vocabularies apart, well above the majority class.
    assert report.accuracy >= 0.75 > report.majority_baseline and report.num_heldout == 8
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "hf-cpt-probe-classifier" and config["encoder"] == tiny_model_path
    assert json.loads((folder / "metrics.json").read_text())["base_model"] == "lm-probe"
    assert "linear probe" in (folder / "README.md").read_text()
    # The probe and its standardisation only: the LM is loaded from its name.
    from safetensors.torch import load_file

    assert set(load_file(folder / "model.safetensors")) == {"weight", "bias", "mean", "scale"}


def test_label_topics_reads_the_folder_and_labels_with_the_probes_probabilities(probe_folder):
    folder, _ = probe_folder
    fresh = group_documents(3, seed=5)
    model = ProbeClassifier.from_pretrained(folder)
    labelled = label_topics(
        fresh.remove_columns("topic"), str(folder), output_dir=folder / "shards", show_progress=False
    )
    probabilities = model.predict_proba(fresh["text"])
    assert list(labelled["topic"]) == [TAXONOMY.topics[i] for i in probabilities.argmax(axis=1)]
    np.testing.assert_allclose(np.array(labelled["topic_probs"]), probabilities, atol=1e-6)


def test_the_embedding_does_not_depend_on_the_batch(probe_folder):
    """Length-sorted, padded batches: a document's vector is the same alone or padded beside longer ones."""
    model = ProbeClassifier.from_pretrained(probe_folder[0])
    texts = group_documents(3, seed=2)["text"]
    together = model.embed(texts, batch_size=len(texts))
    alone = np.stack([model.embed([text]).numpy()[0] for text in texts])
    np.testing.assert_allclose(together.numpy(), alone, atol=1e-5)


@pytest.mark.parametrize("model", ["lm-probe", "char-ngrams"])
@pytest.mark.parametrize(("setting", "value"), [("epochs", 3), ("learning_rate", 1e-3)])
def test_a_fitted_classifier_refuses_epochs_and_learning_rate(tmp_path, model, setting, value):
    with pytest.raises(ValueError, match=f"^{setting} is {value}, but the {model} classifier is fitted .*; leave"):
        train_topic_classifier(group_documents(2, seed=0), TAXONOMY, model, tmp_path, **{setting: value})


def test_the_recipe_passes_epochs_only_to_encoders_and_refuses_them_where_none_is_trained():
    from hf_cpt.run_config import TopicClassifierConfig

    mixed = TopicClassifierConfig(model={"web-cn": "lm-probe"}, epochs=3)
    assert mixed.training_settings("web-cn") == {"epochs": None, "learning_rate": None}
    assert mixed.training_settings("web-en") == {"epochs": 3, "learning_rate": 3e-4}
    assert TopicClassifierConfig().training_settings("web-en") == {"epochs": 8, "learning_rate": 3e-4}
    with pytest.raises(ValueError, match=r"^topic_classifier.learning_rate is 0.001, but every source's classifier"):
        TopicClassifierConfig(model={"web-cn": "char-ngrams", "web-en": "lm-probe"}, learning_rate=1e-3)


@pytest.mark.slow
def test_the_bundled_chinese_web_documents_are_learnt_on_the_demos_split():
    """The embedded default's web-cn classifier: at least half right on the demo's split (seed 0), and the mean
    over five split seeds, since one split of 13 documents moves by 1/13 per document."""
    import tempfile

    from hf_cpt.data import DEMO_CORPUS_PATH, load_source

    dataset = load_source(DEMO_CORPUS_PATH, "web-cn", "train")
    accuracies = []
    for seed in range(5):
        with tempfile.TemporaryDirectory() as folder:
            accuracies.append(
                train_topic_classifier(dataset, "cn", "lm-probe", folder, test_size=0.25, seed=seed).accuracy
            )
    print(f"\nlm-probe on web-cn: accuracy per seed {accuracies}, mean {np.mean(accuracies):.3f}")
    assert accuracies[0] >= 0.5 and np.mean(accuracies) >= 0.6

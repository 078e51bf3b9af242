"""The hashed n-gram topic classifier (`model: char-ngrams`): learning, its folder, and labeling with it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from datasets import Dataset

from hf_cpt.topics.classifier import train_topic_classifier
from hf_cpt.topics.labeling import label_topics
from hf_cpt.topics.ngram_classifier import NgramClassifier, NgramConfig, ngram_counts
from hf_cpt.topics.taxonomy import Taxonomy

TAXONOMY = Taxonomy("toy", "en", ("Astronomy", "Cooking", "Sailing"))
WORDS = {
    "Astronomy": ["telescope", "galaxy", "orbit", "nebula", "comet", "planet", "星系", "望远镜"],
    "Cooking": ["recipe", "oven", "flour", "simmer", "butter", "garlic", "烹饪", "面粉"],
    "Sailing": ["mast", "keel", "harbor", "regatta", "anchor", "tide", "帆船", "港口"],
}
FILLER = ["the", "and", "with", "today", "we", "saw", "一些", "我们"]


def toy_documents(per_topic: int, seed: int) -> Dataset:
    """Documents of 4 to 11 words of their topic and up to 3 of shared filler: clearly distinct, in two scripts."""
    rng = np.random.default_rng(seed)
    texts, topics = [], []
    for _ in range(per_topic):
        for topic, words in WORDS.items():
            mixed = [
                *rng.choice(words, size=int(rng.integers(4, 12))),
                *rng.choice(FILLER, size=int(rng.integers(0, 4))),
            ]
            texts.append(" ".join(rng.permutation(mixed)))
            topics.append(topic)
    return Dataset.from_dict({"text": texts, "topic": topics})


@pytest.fixture(scope="module")
def toy_classifier(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ngram")
    report = train_topic_classifier(toy_documents(8, seed=0), TAXONOMY, "char-ngrams", folder, test_size=0.25)
    return folder, report


def test_it_learns_a_separable_taxonomy_and_writes_a_hub_ready_folder(toy_classifier):
    folder, report = toy_classifier
    assert report.accuracy == 1.0
    assert report.num_heldout == 6 and report.num_train == 18
    assert {"model.safetensors", "config.json", "metrics.json", "confusion_matrix.png", "README.md"} <= {
        path.name for path in folder.iterdir()
    }
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "hf-cpt-ngram-classifier"
    assert config["char_ngrams"] == [1, 2] and config["num_buckets"] > 0
    assert json.loads((folder / "metrics.json").read_text())["base_model"] == "char-ngrams"
    # New documents of the same topics, never seen in training, get their topic.
    fresh = toy_documents(5, seed=7)
    labelled = label_topics(
        fresh.remove_columns("topic"), str(folder), output_dir=folder / "shards", show_progress=False
    )
    assert list(labelled["topic"]) == list(fresh["topic"])


def test_the_saved_folder_gives_identical_probabilities(tmp_path):
    documents = toy_documents(4, seed=3)
    model = NgramClassifier(NgramConfig(id2label=dict(enumerate(TAXONOMY.topics)), char_ngrams=(1, 3)))
    model.fit(list(documents["text"]), [TAXONOMY.index(topic) for topic in documents["topic"]])
    model.save_pretrained(tmp_path)
    loaded = NgramClassifier.from_pretrained(tmp_path)
    assert loaded.config == model.config
    texts = [*toy_documents(4, seed=4)["text"], "", "unrelated words entirely"]
    np.testing.assert_array_equal(loaded.predict_proba(texts), model.predict_proba(texts))
    assert loaded.fingerprint() == model.fingerprint()
    # Another process (another hash seed for Python's `hash`) reads the folder the same way.
    script = (
        "import json, sys; from hf_cpt.topics import NgramClassifier; "
        "print(json.dumps(NgramClassifier.from_pretrained(sys.argv[1]).predict_proba(json.loads(sys.argv[2])).tolist()))"
    )
    other = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), json.dumps(texts)], capture_output=True, text=True, check=True
    )
    np.testing.assert_array_equal(np.array(json.loads(other.stdout), dtype=np.float32), model.predict_proba(texts))
    # Batching changes nothing: each document's probabilities depend on it alone.
    np.testing.assert_array_equal(loaded.predict_proba(texts, batch_size=1), loaded.predict_proba(texts))


def test_character_ngrams_see_chinese_words_and_the_hash_is_stable(toy_classifier):
    folder, _ = toy_classifier
    config = NgramClassifier.from_pretrained(folder).config
    # Chinese has no spaces: its bigrams are the features, and they are shared between documents.
    assert set(ngram_counts("星系很远", config)) & set(ngram_counts("一个星系", config))
    # NFKC and lower case: full-width and capital letters are the same n-grams.
    assert ngram_counts("ＧＡＬＡＸＹ", config) == ngram_counts("galaxy", config)
    assert ngram_counts("galaxy", config) != ngram_counts("galaxies", config)


def test_labeling_resumes_and_does_not_depend_on_the_shard_size(toy_classifier, tmp_path, monkeypatch):
    folder, _ = toy_classifier
    model = NgramClassifier.from_pretrained(folder)
    dataset = Dataset.from_dict({"text": list(toy_documents(4, seed=5)["text"])})  # 12 documents
    clean = label_topics(dataset, model, shard_size=2, output_dir=tmp_path / "clean", show_progress=False)
    wide = label_topics(dataset, model, shard_size=5, output_dir=tmp_path / "wide", show_progress=False)
    assert list(wide["topic"]) == list(clean["topic"])
    np.testing.assert_array_equal(np.array(list(wide["topic_probs"])), np.array(list(clean["topic_probs"])))

    calls, kill_at = [], [3]
    predict = NgramClassifier.predict_proba

    def killed_in_the_third_shard(self, texts, batch_size=1024):
        calls.append(1)
        if len(calls) == kill_at[0]:
            raise RuntimeError("killed")
        return predict(self, texts, batch_size)

    monkeypatch.setattr(NgramClassifier, "predict_proba", killed_in_the_third_shard)
    with pytest.raises(RuntimeError, match="killed"):
        label_topics(dataset, model, shard_size=2, output_dir=tmp_path / "run", show_progress=False)
    assert len(list((tmp_path / "run").glob("*.npy"))) == 2
    calls.clear()
    kill_at[0] = None
    resumed = label_topics(dataset, model, shard_size=2, output_dir=tmp_path / "run", show_progress=False)
    assert len(calls) == 4  # only the 4 unfinished shards are labelled
    assert list(resumed["topic_probs"]) == list(clean["topic_probs"])


def test_retrained_weights_do_not_reuse_the_shards_of_the_old_ones(toy_classifier, tmp_path, monkeypatch):
    """The default shard folder is named by the weights' fingerprint: a retrained model must not hit the old one."""
    monkeypatch.setenv("HF_CPT_CACHE", str(tmp_path))
    folder, _ = toy_classifier
    model = NgramClassifier.from_pretrained(folder)
    dataset = Dataset.from_dict({"text": ["a telescope in the harbor"]})
    before = label_topics(dataset, model, show_progress=False)["topic_probs"]
    # One weight of one n-gram of the document changes, as after a retrain on a few more documents.
    bucket = next(iter(ngram_counts("telescope", model.config)))
    with torch.no_grad():
        model.weight.weight[bucket, 0] += 1.0
    after = label_topics(dataset, model, show_progress=False)["topic_probs"]
    np.testing.assert_array_equal(np.array(after), model.predict_proba(dataset["text"]))
    assert not np.array_equal(np.array(before), np.array(after))


def test_an_unknown_setting_fails_with_one_sentence(tmp_path):
    from hf_cpt.topics.ngram_classifier import train_ngram_classifier

    with pytest.raises(ValueError, match="'ngram_range' is not a setting of the n-gram classifier; use char_ngrams"):
        train_ngram_classifier(toy_documents(2, seed=0), TAXONOMY, tmp_path, ngram_range=(1, 3))


@pytest.mark.slow
def test_the_bundled_chinese_web_documents_are_learnt_with_the_demo_settings(tmp_path):
    """Mean held-out accuracy over five split seeds, with the demo's test_size: one 13-document split is noisy."""
    from hf_cpt.data import DEMO_CORPUS_PATH, load_source

    dataset = load_source(DEMO_CORPUS_PATH, "web-cn", "train")
    reports = [
        train_topic_classifier(dataset, "cn", "char-ngrams", tmp_path / str(seed), test_size=0.25, seed=seed)
        for seed in range(5)
    ]
    accuracies = [report.accuracy for report in reports]
    print(f"\nchar-ngrams on web-cn: accuracy per seed {accuracies}, mean {np.mean(accuracies):.3f}")
    assert np.mean(accuracies) >= 0.5
    assert min(accuracies) >= reports[0].majority_baseline + 0.3

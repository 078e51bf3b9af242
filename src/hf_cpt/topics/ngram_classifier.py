"""A topic classifier over hashed character and word n-grams: the fastText-style labeller of §3.2.1.

An English encoder such as all-MiniLM-L6-v2 sees Chinese text as `[UNK]` tokens and cannot learn its topics,
and a few labelled documents per topic are too few to fine-tune any encoder well. A linear model over
hashed n-grams, as corpus-scale pipelines use for labelling (fastText in FineWeb / datatrove), needs no
vocabulary: character n-grams carry Chinese words, which are not space-separated, and word n-grams carry
English ones. Each document becomes a sparse vector of sublinear TF-IDF weights over `num_buckets` hash
buckets, L2-normalised; an `EmbeddingBag` in sum mode over those buckets is the linear layer. The fit is
convex (cross-entropy with an L2 penalty), so full-batch L-BFGS runs it to its optimum: no learning rate,
epochs or batch order to tune, and the same data give the same weights.

The classifier lives in a folder like an encoder's: `model.safetensors` (weights and IDF), `config.json`
(hashing settings and labels), `metrics.json`, `confusion_matrix.png` and a model card. `label_topics`
labels with it through the same sharded, resumable pass as an encoder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from safetensors.torch import load_file, save_file

from hf_cpt.cards import render_card
from hf_cpt.topics.classifier import (
    NGRAM_MODEL_NAME,
    ClassifierReport,
    heldout_report,
    labelled_split,
    write_report,
)
from hf_cpt.topics.taxonomy import Taxonomy, load_taxonomy
from hf_cpt.utils.distributed import barrier, rank_and_world

MODEL_TYPE = "hf-cpt-ngram-classifier"
_WORD = re.compile(r"\w+")


@dataclass
class NgramConfig:
    """The hashing settings and labels of an n-gram classifier, as written to `config.json`.

    `char_ngrams` and `word_ngrams` are inclusive (min, max) lengths; (0, 0) turns a kind off. Words are runs of
    letters and digits, so for Chinese a "word" is a whole clause, which the character n-grams cover instead.
    `max_chars` truncates documents (None: whole documents); `l2` is the penalty of the fit.
    """

    id2label: dict[int, str]
    char_ngrams: tuple[int, int] = (1, 2)
    word_ngrams: tuple[int, int] = (1, 1)
    num_buckets: int = 2**18
    max_chars: int | None = None
    l2: float = 1e-3
    model_type: str = field(default=MODEL_TYPE)

    def __post_init__(self) -> None:
        self.id2label = {int(i): label for i, label in self.id2label.items()}
        self.char_ngrams, self.word_ngrams = tuple(self.char_ngrams), tuple(self.word_ngrams)

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    def to_json_string(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json_file(cls, path: str | os.PathLike[str]) -> NgramConfig:
        return cls(**{key: value for key, value in json.loads(Path(path).read_text()).items()})


def _bucket(kind: str, gram: str, num_buckets: int) -> int:
    """A hash stable across processes and runs (unlike `hash`), so saved weights keep their meaning."""
    return zlib.crc32(f"{kind}{gram}".encode()) % num_buckets


def ngram_counts(text: str, config: NgramConfig) -> Counter[int]:
    """How often each bucket occurs in `text`: NFKC-normalised, lower-cased, whitespace runs as one space."""
    text = " ".join(unicodedata.normalize("NFKC", text[: config.max_chars]).lower().split())
    counts: Counter[int] = Counter()
    low, high = config.char_ngrams
    for n in range(max(low, 1), high + 1):
        counts.update(_bucket("c", text[i : i + n], config.num_buckets) for i in range(len(text) - n + 1))
    words = _WORD.findall(text)
    low, high = config.word_ngrams
    for n in range(max(low, 1), high + 1):
        counts.update(_bucket("w", " ".join(words[i : i + n]), config.num_buckets) for i in range(len(words) - n + 1))
    return counts


class NgramClassifier(torch.nn.Module):
    """Linear topic scores over sublinear TF-IDF weights of hashed n-grams; softmax gives the probabilities."""

    def __init__(self, config: NgramConfig) -> None:
        super().__init__()
        self.config = config
        self.weight = torch.nn.EmbeddingBag(config.num_buckets, config.num_labels, mode="sum")
        torch.nn.init.zeros_(self.weight.weight)
        self.bias = torch.nn.Parameter(torch.zeros(config.num_labels))
        self.register_buffer("idf", torch.ones(config.num_buckets))

    def featurize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`EmbeddingBag` inputs (bucket ids, offsets, term frequencies 1 + log count) of `texts`."""
        counts = [ngram_counts(text, self.config) for text in texts]
        ids = np.fromiter((bucket for c in counts for bucket in c), dtype=np.int64)
        frequencies = np.fromiter((1.0 + math.log(n) for c in counts for n in c.values()), dtype=np.float32)
        offsets = np.cumsum([0] + [len(c) for c in counts[:-1]], dtype=np.int64)
        return torch.from_numpy(ids), torch.from_numpy(offsets), torch.from_numpy(frequencies)

    def tfidf(self, ids: torch.Tensor, offsets: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
        """The weight of every (document, bucket) entry: term frequency x IDF, each document scaled to unit length."""
        weights = frequencies * self.idf[ids]
        documents = torch.bucketize(torch.arange(len(ids)), offsets, right=True) - 1
        norms = torch.zeros(len(offsets)).index_add_(0, documents, weights**2).sqrt().clamp_min(1e-12)
        return weights / norms[documents]

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
        """Logits (documents x labels) of featurised documents."""
        return self.weight(ids, offsets, per_sample_weights=self.tfidf(ids, offsets, frequencies)) + self.bias

    @torch.inference_mode()
    def predict_proba(self, texts: Sequence[str], batch_size: int = 1024) -> np.ndarray:
        """Class probabilities (float32, documents x labels) of `texts`, in their order."""
        probabilities = np.zeros((len(texts), self.config.num_labels), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            logits = self(*self.featurize(texts[start : start + batch_size]))
            probabilities[start : start + batch_size] = logits.softmax(dim=-1).numpy()
        return probabilities

    def fingerprint(self) -> str:
        """A hash of the config and of every weight: most buckets stay zero, so a sample would miss a retrain."""
        digest = hashlib.blake2b(self.config.to_json_string().encode(), digest_size=16)
        for name, tensor in sorted(self.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().numpy().tobytes())
        return digest.hexdigest()

    def fit(self, texts: Sequence[str], labels: Sequence[int], max_iterations: int = 100) -> None:
        """Set the IDF from `texts` and fit the weights to the optimum of mean cross-entropy + l2/2 x ||W||²
        (L-BFGS, at most `max_iterations` steps: on the bundled documents 100 and 500 give the same labels).

        Only the buckets of the training documents get a gradient (the penalty keeps the rest at zero), so the
        fit runs on a dense matrix of those columns, documents x present buckets, and writes their rows back.
        """
        ids, offsets, frequencies = self.featurize(texts)
        documents = torch.bucketize(torch.arange(len(ids)), offsets, right=True) - 1
        present, columns = torch.unique(ids, return_inverse=True)
        pairs = torch.unique(documents * len(present) + columns)
        document_frequency = torch.bincount(pairs % len(present), minlength=len(present)).float()
        # Smoothed IDF, as if one more document held every n-gram: a bucket unseen in training gets the highest.
        self.idf.fill_(math.log(1 + len(texts)) + 1)
        self.idf[present] = torch.log((1 + len(texts)) / (1 + document_frequency)) + 1
        features = torch.zeros(len(texts), len(present))
        features.index_put_((documents, columns), self.tfidf(ids, offsets, frequencies), accumulate=True)
        weight, bias = fit_softmax_regression(features, labels, self.config.num_labels, self.config.l2, max_iterations)
        with torch.no_grad():
            self.weight.weight.zero_()
            self.weight.weight[present] = weight
            self.bias.copy_(bias)
        self.eval()

    def save_pretrained(self, directory: str | os.PathLike[str]) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(
            {name: tensor.contiguous() for name, tensor in self.state_dict().items()}, directory / "model.safetensors"
        )
        (directory / "config.json").write_text(self.config.to_json_string(), encoding="utf-8")

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str]) -> NgramClassifier:
        """The classifier in a folder or Hub model repo written by `save_pretrained`."""
        model = cls(NgramConfig.from_json_file(classifier_file(name_or_path, "config.json")))
        model.load_state_dict(load_file(classifier_file(name_or_path, "model.safetensors")))
        return model.eval()


def fit_softmax_regression(
    features: torch.Tensor, labels: Sequence[int], num_labels: int, l2: float, max_iterations: int = 100
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight (features x labels) and bias at the optimum of mean cross-entropy + l2/2 x ||W||² on `features`.

    The objective is convex, so full-batch L-BFGS with a strong-Wolfe line search reaches its optimum: there is
    no learning rate, epoch count or batch order, and the same data give the same weights.
    """
    targets = torch.as_tensor(labels, dtype=torch.long)
    weight = torch.zeros(features.shape[1], num_labels, requires_grad=True)
    bias = torch.zeros(num_labels, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], max_iter=max_iterations, tolerance_grad=1e-9, tolerance_change=1e-12,
        history_size=20, line_search_fn="strong_wolfe",
    )  # fmt: skip

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(features @ weight + bias, targets)
        loss = loss + 0.5 * l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(objective)
    return weight.detach(), bias.detach()


def saved_model_type(name_or_path: str | os.PathLike[str]) -> str | None:
    """The `model_type` in the `config.json` of a folder or Hub repo; None where there is no such file."""
    if Path(name_or_path).is_dir() and not (Path(name_or_path) / "config.json").is_file():
        return None
    try:
        config = json.loads(Path(classifier_file(name_or_path, "config.json")).read_text())
    except OSError:
        return None  # not a model repo at all: the encoder loader says what is wrong
    return config.get("model_type")


def classifier_file(name_or_path: str | os.PathLike[str], filename: str) -> str:
    """A file of a classifier folder, or of a Hub model repo (downloaded, cached, offline-aware)."""
    from transformers.utils import cached_file

    return cached_file(str(name_or_path), filename)


def is_ngram_classifier(name_or_path: str | os.PathLike[str]) -> bool:
    """Whether the folder or Hub repo holds an n-gram classifier (its `config.json` says so), not an encoder."""
    return saved_model_type(name_or_path) == MODEL_TYPE


def _model_card(report: ClassifierReport, taxonomy: Taxonomy, config: NgramConfig) -> str:
    """A Hub model card: what the classifier is, its held-out quality against the baseline, and how to use it."""
    from huggingface_hub import ModelCardData

    card_data = ModelCardData(library_name="hf-cpt", pipeline_tag="text-classification", tags=["hf-cpt"])
    return render_card("topic_classifier_card.md", card_data, report=report, taxonomy=taxonomy, ngram=config)


def train_ngram_classifier(
    dataset: Dataset,
    taxonomy: Taxonomy | str | os.PathLike[str],
    output_dir: str | os.PathLike[str] = "topic-classifier",
    *,
    text_column: str = "text",
    label_column: str = "topic",
    test_size: float = 0.2,
    seed: int = 0,
    **settings: Any,
) -> ClassifierReport:
    """Fit an n-gram classifier on labelled documents and measure it on the stratified held-out split.

    Args:
        dataset, taxonomy, text_column, label_column, test_size, seed: as for `train_topic_classifier`; the
            split is the same one.
        output_dir: receives `model.safetensors`, `config.json`, `metrics.json`, `confusion_matrix.png` and a
            model card `README.md`.
        settings: `NgramConfig` fields (`char_ngrams`, `word_ngrams`, `num_buckets`, `max_chars`, `l2`).

    Returns:
        the held-out report, also written to `output_dir/metrics.json`.
    """
    unknown = sorted(set(settings) - {"char_ngrams", "word_ngrams", "num_buckets", "max_chars", "l2"})
    if unknown:
        raise ValueError(
            f"{unknown[0]!r} is not a setting of the n-gram classifier; use char_ngrams, word_ngrams, num_buckets, "
            "max_chars or l2."
        )
    taxonomy = load_taxonomy(taxonomy)
    labels, train_rows, heldout_rows = labelled_split(dataset, taxonomy, text_column, label_column, test_size, seed)
    texts = dataset[text_column]
    model = NgramClassifier(NgramConfig(id2label=dict(enumerate(taxonomy.topics)), **settings))
    model.fit([texts[i] for i in train_rows], [labels[i] for i in train_rows])
    predicted = model.predict_proba([texts[i] for i in heldout_rows]).argmax(axis=1)
    report = heldout_report(labels, train_rows, heldout_rows, predicted, taxonomy, output_dir)
    if rank_and_world()[0] == 0:  # every rank fits the same weights; one writes them
        model.save_pretrained(output_dir)
        write_report(report, taxonomy, NGRAM_MODEL_NAME, _model_card(report, taxonomy, model.config))
    barrier()
    return report

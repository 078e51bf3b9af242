"""A topic classifier that is a linear probe on a frozen causal LM: the embedded default's Chinese labeller.

The paper labels Chinese web pages with a tiny Chinese BERT (§3.2.1); none ships in a package, and the embedded
English encoder (all-MiniLM-L6-v2) reads Chinese as `[UNK]`. The model being trained does read Chinese: its
byte-level tokenizer covers every character and its pre-training saw some. So each document becomes the mean of
the LM's last hidden states over its tokens (the LM frozen, nothing fine-tuned), standardised per dimension on
the training documents and scaled to unit length, and a softmax regression is fitted on those vectors to its
optimum (L-BFGS, as the n-gram classifier: no learning rate or epochs). With a few labelled documents per
topic a probe of 576 numbers generalises where fine-tuning 135M parameters would not (docs/benchmarks.md).

The folder holds `model.safetensors` (probe and standardisation), `config.json` (the LM, `max_length`, labels),
`metrics.json`, `confusion_matrix.png` and a model card; the LM itself is loaded from its name, where the
embedded SmolLM2's name resolves to the installed package.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_cpt.cards import render_card
from hf_cpt.modeling import EMBEDDED_MODEL_ID, embedded_model_path
from hf_cpt.topics.classifier import PROBE_MODEL_NAME, ClassifierReport, heldout_report, labelled_split, write_report
from hf_cpt.topics.ngram_classifier import classifier_file, fit_softmax_regression, saved_model_type
from hf_cpt.topics.taxonomy import Taxonomy, load_taxonomy
from hf_cpt.utils.distributed import barrier, rank_and_world
from hf_cpt.utils.inference import pad_batch

MODEL_TYPE = "hf-cpt-probe-classifier"


@dataclass
class ProbeConfig:
    """The LM a probe reads, how much of each document, and its labels, as written to `config.json`.

    `encoder` is a Hub id or folder of a causal LM (default: the embedded SmolLM2-135M-Instruct); documents are
    truncated to `max_length` tokens; `l2` is the penalty of the fit.
    """

    id2label: dict[int, str]
    encoder: str = EMBEDDED_MODEL_ID
    max_length: int = 512
    l2: float = 1e-2
    model_type: str = field(default=MODEL_TYPE)

    def __post_init__(self) -> None:
        self.id2label = {int(i): label for i, label in self.id2label.items()}

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    def to_json_string(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def _encoder_path(encoder: str) -> str:
    """Where the LM is loaded from: the installed package for the embedded SmolLM2, else `encoder` itself."""
    return str(embedded_model_path()) if encoder == EMBEDDED_MODEL_ID else encoder


class ProbeClassifier(torch.nn.Module):
    """Softmax regression over the standardised, unit-length mean last hidden state of a frozen causal LM."""

    def __init__(self, config: ProbeConfig) -> None:
        super().__init__()
        self.config = config
        path = _encoder_path(config.encoder)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.encoder = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval().requires_grad_(False)
        hidden = self.encoder.config.hidden_size
        self.weight = torch.nn.Parameter(torch.zeros(hidden, config.num_labels))
        self.bias = torch.nn.Parameter(torch.zeros(config.num_labels))
        self.register_buffer("mean", torch.zeros(hidden))
        self.register_buffer("scale", torch.ones(hidden))

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], batch_size: int = 8) -> torch.Tensor:
        """The mean last hidden state (documents x hidden, float32) over each document's first `max_length` tokens.

        Documents go in length order, so a batch pads only to its own longest; the rows come back in input order.
        """
        token_ids = self.tokenizer(list(texts), truncation=True, max_length=self.config.max_length)["input_ids"]
        order = np.argsort([len(ids) for ids in token_ids], kind="stable")
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        device = next(self.encoder.parameters()).device
        vectors = torch.zeros(len(token_ids), self.encoder.config.hidden_size)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            input_ids, mask = pad_batch([token_ids[row] for row in rows], pad_id)
            output = self.encoder(
                input_ids=input_ids.to(device), attention_mask=mask.to(device), output_hidden_states=True
            )
            mask = mask.to(device).unsqueeze(-1).float()
            pooled = (output.hidden_states[-1].float() * mask).sum(1) / mask.sum(1)
            vectors[torch.as_tensor(rows)] = pooled.cpu()
        return vectors

    def features(self, vectors: torch.Tensor) -> torch.Tensor:
        """Vectors standardised with the training documents' statistics, each scaled to unit length."""
        standardised = (vectors - self.mean) / self.scale
        return standardised / standardised.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        """Logits (documents x labels) of embedded documents."""
        return self.features(vectors) @ self.weight + self.bias

    @torch.inference_mode()
    def predict_proba(self, texts: Sequence[str], batch_size: int = 8) -> np.ndarray:
        """Class probabilities (float32, documents x labels) of `texts`, in their order."""
        if not texts:
            return np.zeros((0, self.config.num_labels), dtype=np.float32)
        return self(self.embed(texts, batch_size)).softmax(dim=-1).numpy()

    def probe_state(self) -> dict[str, torch.Tensor]:
        """What the probe learnt (the LM is not saved: it is loaded from its name)."""
        return {name: getattr(self, name).detach().contiguous() for name in ("weight", "bias", "mean", "scale")}

    def fingerprint(self) -> str:
        """A hash of the config (the LM's name included) and of the probe's tensors."""
        digest = hashlib.blake2b(self.config.to_json_string().encode(), digest_size=16)
        for name, tensor in sorted(self.probe_state().items()):
            digest.update(name.encode())
            digest.update(tensor.cpu().numpy().tobytes())
        return digest.hexdigest()

    def fit(self, texts: Sequence[str], labels: Sequence[int], max_iterations: int = 200) -> None:
        """Set the standardisation from `texts` and fit the probe to its optimum (`fit_softmax_regression`)."""
        vectors = self.embed(texts)
        with torch.no_grad():
            self.mean.copy_(vectors.mean(0))
            self.scale.copy_(vectors.std(0).clamp_min(1e-6))
        weight, bias = fit_softmax_regression(
            self.features(vectors), labels, self.config.num_labels, self.config.l2, max_iterations
        )
        with torch.no_grad():
            self.weight.copy_(weight)
            self.bias.copy_(bias)
        self.eval()

    def save_pretrained(self, directory: str | os.PathLike[str]) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(self.probe_state(), directory / "model.safetensors")
        (directory / "config.json").write_text(self.config.to_json_string(), encoding="utf-8")

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str]) -> ProbeClassifier:
        """The classifier in a folder or Hub model repo written by `save_pretrained`, with its LM."""
        settings = json.loads(Path(classifier_file(name_or_path, "config.json")).read_text())
        model = cls(ProbeConfig(**settings))
        with torch.no_grad():
            for name, tensor in load_file(classifier_file(name_or_path, "model.safetensors")).items():
                getattr(model, name).copy_(tensor)
        return model.eval()


def is_probe_classifier(name_or_path: str | os.PathLike[str]) -> bool:
    """Whether the folder or Hub repo holds a probe classifier (its `config.json` says so)."""
    return saved_model_type(name_or_path) == MODEL_TYPE


def _model_card(report: ClassifierReport, taxonomy: Taxonomy, config: ProbeConfig) -> str:
    """A Hub model card: the LM probed, the held-out quality against the baseline, and how to use it."""
    from huggingface_hub import ModelCardData

    card_data = ModelCardData(
        base_model=config.encoder if not Path(config.encoder).exists() else None,
        library_name="hf-cpt",
        pipeline_tag="text-classification",
        tags=["hf-cpt"],
    )
    return render_card("topic_classifier_card.md", card_data, report=report, taxonomy=taxonomy, probe=config)


def train_probe_classifier(
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
    """Fit a probe classifier on labelled documents and measure it on the stratified held-out split.

    Args:
        dataset, taxonomy, text_column, label_column, test_size, seed: as for `train_topic_classifier`; the
            split is the same one.
        output_dir: receives `model.safetensors`, `config.json`, `metrics.json`, `confusion_matrix.png` and a
            model card `README.md`.
        settings: `ProbeConfig` fields (`encoder`, `max_length`, `l2`).

    Returns:
        the held-out report, also written to `output_dir/metrics.json`.
    """
    unknown = sorted(set(settings) - {"encoder", "max_length", "l2"})
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not a setting of the probe classifier; use encoder, max_length or l2.")
    taxonomy = load_taxonomy(taxonomy)
    labels, train_rows, heldout_rows = labelled_split(dataset, taxonomy, text_column, label_column, test_size, seed)
    texts = dataset[text_column]
    model = ProbeClassifier(ProbeConfig(id2label=dict(enumerate(taxonomy.topics)), **settings))
    model.fit([texts[i] for i in train_rows], [labels[i] for i in train_rows])
    predicted = model.predict_proba([texts[i] for i in heldout_rows]).argmax(axis=1)
    report = heldout_report(labels, train_rows, heldout_rows, predicted, taxonomy, output_dir)
    if rank_and_world()[0] == 0:  # every rank fits the same probe; one writes it
        model.save_pretrained(output_dir)
        write_report(report, taxonomy, PROBE_MODEL_NAME, _model_card(report, taxonomy, model.config))
    barrier()
    return report

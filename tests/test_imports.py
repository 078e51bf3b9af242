"""`import hf_cpt` is cheap: the top-level names are imported when first used, and a push needs no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

import hf_cpt


def loaded_after(statement: str) -> set[str]:
    """The heavy packages a fresh interpreter has loaded after running `statement`."""
    heavy = "('torch', 'transformers', 'datasets')"
    code = f"import sys\n{statement}\nprint(' '.join(m for m in {heavy} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


@pytest.mark.parametrize("statement", ["import hf_cpt", "import hf_cpt.hub", "from hf_cpt.hub import push_folder"])
def test_package_and_hub_import_without_torch_or_transformers(statement):
    assert loaded_after(statement) == set()


def test_a_top_level_name_loads_its_module_when_first_used():
    assert "torch" in loaded_after("from hf_cpt import CPTTrainer")


@pytest.mark.parametrize("name", hf_cpt.__all__)
def test_every_top_level_name_is_the_object_of_its_module(name):
    import importlib

    module = next(module for module, names in hf_cpt._STRUCTURE.items() if name in names)
    assert getattr(hf_cpt, name) is getattr(importlib.import_module(module), name)
    assert name in dir(hf_cpt)


def test_an_unknown_name_is_an_attribute_error_naming_it():
    with pytest.raises(AttributeError, match="has no attribute 'CPTTrainr'"):
        hf_cpt.CPTTrainr  # noqa: B018

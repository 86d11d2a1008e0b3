"""Checkpoints written before the data layer moved into sub-packages still load: their pickled class names resolve."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from nano8k.data.channel.telephone import TelephoneChannel
from nano8k.data.pipeline.specaugment import SpecAugment
from nano8k.data.pipeline.speed import SpeedPerturb
from nano8k.training.checkpointing import LEGACY_NAMES


@pytest.mark.parametrize("old_name", sorted(LEGACY_NAMES))
def test_a_checkpoint_naming_the_old_module_loads_weights_only(tmp_path, monkeypatch, old_name):
    cls = LEGACY_NAMES[old_name]
    module_name, _, class_name = old_name.rpartition(".")
    value = {SpecAugment: SpecAugment(), SpeedPerturb: SpeedPerturb(), TelephoneChannel: TelephoneChannel()}[cls]
    old_module = types.ModuleType(module_name)  # pickle writes the class under the module its __module__ names
    setattr(old_module, class_name, cls)
    monkeypatch.setitem(sys.modules, module_name, old_module)
    monkeypatch.setattr(cls, "__module__", module_name)
    torch.save({"datamodule_hyper_parameters": {"setting": value}}, tmp_path / "old.ckpt")
    monkeypatch.undo()
    loaded = torch.load(tmp_path / "old.ckpt", weights_only=True)["datamodule_hyper_parameters"]["setting"]
    assert type(loaded) is cls and loaded == value

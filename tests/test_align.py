"""nano8k.align: the real configs' alignment tags, defaults for omitted keys, output formats and CLI."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import yaml

from nano8k.commands.align import main
from nano8k.data.pipeline.datamodule import TelephoneDataModule
from nano8k.training.alignment import align_files, compare, to_json, to_markdown, to_table

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.fixture(scope="module")
def telephone():
    return align_files(CONFIGS / "telephone.yaml", CONFIGS / "pretrained.yaml")


@pytest.mark.parametrize(
    "key, before, after, tag",
    [
        ("model.freeze.encoder", True, False, "CRITICAL"),
        ("model.lr", 5e-6, 5e-5, "CRITICAL"),
        ("model.weight_decay", 0.0, 0.01, "MODIFIED"),
    ],
)
def test_telephone_vs_pretrained_changes(telephone, key, before, after, tag):
    row = telephone.row(key)
    assert (row.against, row.value, row.tag) == (before, after, tag)


def test_deepspeed_off_specaugment_new_epochs(telephone):
    strategy = telephone.row("trainer.strategy")
    assert "deepspeed" in str(strategy.against) and "deepspeed" not in str(strategy.value)
    assert strategy.tag == "CRITICAL"
    spec = telephone.row("data.specaugment")
    assert spec.against is None and isinstance(spec.value, dict) and spec.tag == "NEW"
    epochs = telephone.row("trainer.max_epochs")
    assert epochs.against == 2 and 10 <= epochs.value <= 20 and epochs.tag == "MODIFIED"
    assert sum(telephone.summary.values()) == len(telephone.rows)
    assert all(r.reason for r in telephone.rows)


def test_stage1_vs_main_shows_sample_rate():
    alignment = align_files(CONFIGS / "stage1_encoder_adapt.yaml", CONFIGS / "telephone.yaml")
    row = alignment.row("data.frontend_sample_rate")
    assert (row.against, row.value, row.tag) == (16000, 8000, "CRITICAL")


def test_omitted_key_shows_the_class_default():
    against = {"data": {"sort_window": 7, "max_frames_per_batch": 10}, "model": {"lr": "1e-4"}}
    config = {"data": {"max_frames_per_batch": 10}, "model": {"lr": 1e-4}}
    alignment = compare(config, against)
    default = inspect.signature(TelephoneDataModule.__init__).parameters["sort_window"].default
    row = alignment.row("data.sort_window")
    assert (row.tag, row.value, row.value_set, row.default) == ("OMITTED", default, False, default)
    assert alignment.row("data.max_frames_per_batch").tag == "ALIGNED"
    assert alignment.row("model.lr").tag == "ALIGNED"  # "1e-4" (YAML 1.1 string) == 1e-4


def test_formats_and_cli(telephone, tmp_path, capsys):
    md = to_markdown(telephone)
    assert "| `model.lr` | 5e-06 | 5e-05 |" in md and "**Summary:** CRITICAL" in md
    assert json.loads(to_json(telephone))["summary"] == telephone.summary
    assert "summary: CRITICAL" in to_table(telephone)
    out = tmp_path / "align.md"
    assert main([str(CONFIGS / "telephone.yaml"), "--against", str(CONFIGS / "pretrained.yaml"), "-o", str(out)]) == 0
    assert out.read_text() == md
    assert main([str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"trainer": {"logger": {"class_path": "no.such.Logger"}}}))
    assert main([str(bad), "--against", str(CONFIGS / "pretrained.yaml")]) == 2
    assert "no.such.Logger" in capsys.readouterr().err


@pytest.mark.parametrize(
    "doc, config, against",
    [
        ("telephone_vs_pretrained.md", "telephone.yaml", "pretrained.yaml"),
        ("stage1_vs_pretrained.md", "stage1_encoder_adapt.yaml", "pretrained.yaml"),
        ("stage1_vs_telephone.md", "stage1_encoder_adapt.yaml", "telephone.yaml"),
    ],
)
def test_committed_alignment_docs_are_regenerated_from_the_configs(doc, config, against):
    root = Path(__file__).resolve().parent.parent
    generated = to_markdown(align_files(root / "configs" / config, root / "configs" / against))
    assert (root / "docs" / "alignment" / doc).read_text(encoding="utf-8").strip() == generated.strip(), (
        f"docs/alignment/{doc} is stale: python -m nano8k.align configs/{config} --against configs/{against} "
        f"-o docs/alignment/{doc}"
    )

"""The shipped configs, a base plus per-stage files, parse to exactly what they parsed to before the layering.

``tests/fixtures/parsed_configs/<name>.json`` holds ``parse_config(["--config", configs/<name>.yaml]).as_dict()``
(the config-path entry left out) as captured from the single-file configs of commit fa99103.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from nano8k.training.config import BASE_KEY, base_chain, expand_bases, layered_config, parse_config

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "parsed_configs"
SHIPPED = ("telephone", "stage1_encoder_adapt", "pretrained", "demo", "mini_pretrain")


def parsed(args: list[str]) -> dict:
    data = parse_config(args).as_dict()
    data.pop("config", None)
    return json.loads(json.dumps(data, sort_keys=True, default=repr))


def flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_config_parses_as_before(name):
    before = flat(json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8")))
    config = ROOT / "configs" / f"{name}.yaml"
    for after in (
        flat(parsed(["--config", str(config)])),  # as fit reads it: its bases first
        flat(parsed(["--config", yaml.safe_dump(layered_config(config))])),
    ):  # one file (sweep points)
        for key in sorted(set(before) | set(after)):
            assert after.get(key, "MISSING") == before.get(key, "MISSING"), key


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_config_names_the_base(name):
    chain = base_chain(ROOT / "configs" / f"{name}.yaml")
    assert chain[0].name == "base.yaml" and len(chain) >= 2
    assert "data_manifests/" not in (ROOT / "configs" / "base.yaml").read_text(encoding="utf-8")  # shipped_config


def test_bases_expand_first_and_a_cycle_is_named(tmp_path):
    (tmp_path / "a.yaml").write_text(f"{BASE_KEY}: b.yaml\nmodel:\n  lr: 1.0e-4\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("model:\n  lr: 2.0e-4\n  weight_decay: 0.5\n", encoding="utf-8")
    args = expand_bases(["--config", str(tmp_path / "a.yaml"), "--model.lr", "3e-4"])
    assert args == ["--config", str(tmp_path / "b.yaml"), "--config", str(tmp_path / "a.yaml"), "--model.lr", "3e-4"]
    assert layered_config(tmp_path / "a.yaml") == {"model": {"lr": 1e-4, "weight_decay": 0.5}}
    (tmp_path / "b.yaml").write_text(f"{BASE_KEY}: a.yaml\n", encoding="utf-8")
    with pytest.raises(ValueError, match="already in the chain"):
        base_chain(tmp_path / "a.yaml")
    (tmp_path / "a.yaml").write_text(f"{BASE_KEY}: missing.yaml\n", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="missing.yaml: config file not found"):
        base_chain(tmp_path / "a.yaml")

"""Where nano8k's files are: its cache folder, and the configs and demo corpus it ships (in a wheel or a checkout)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

# Copied from the project tree into the wheel by setup.py (which reads this tuple); the repository keeps one copy.
SHIPPED = ("configs", "data_manifests/telephone-digits")
PACKAGE_DIR = Path(__file__).resolve().parent
INSTALLED_ROOT = PACKAGE_DIR / "shipped"  # in a wheel: nano8k/shipped/configs/..., nano8k/shipped/data_manifests/...
CHECKOUT_ROOT = PACKAGE_DIR.parent  # in a source checkout (or an editable install): the repository root
CORPUS_PREFIX = "data_manifests/"
CACHE_ENV = "NANO8K_CACHE_DIR"  # generated tiny models, manifest caches, local copies of remote shards


def cache_root() -> Path:
    """``$NANO8K_CACHE_DIR``, else ``~/.cache/nano8k``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "nano8k").expanduser()


def project_file(relative: str) -> Path:
    """``relative`` (e.g. ``configs/demo.yaml``) in the installed package, else in the source checkout (a folder
    holding this project's pyproject.toml; an installed package's parent, site-packages, is not one)."""
    roots = [INSTALLED_ROOT] + ([CHECKOUT_ROOT] if (CHECKOUT_ROOT / "pyproject.toml").is_file() else [])
    for root in roots:
        if (root / relative).exists():
            return root / relative
    raise FileNotFoundError(
        f"{relative}: neither in the installed package ({INSTALLED_ROOT}) nor in a source "
        f"checkout ({CHECKOUT_ROOT}); reinstall nano8k (pip install nano8k or pip install .)"
    )


def _resolved(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _resolved(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolved(item) for item in value]
    if isinstance(value, str) and value.startswith(CORPUS_PREFIX):
        return str(project_file(value))
    return value


def shipped_config(name: str) -> str:
    """The YAML text of ``configs/<name>`` with its ``data_manifests/...`` paths made absolute (the shipped corpus),
    so it runs from any folder; its output paths (``runs/...``) stay relative to the current one."""
    path = project_file(f"configs/{name}")
    config = _resolved(yaml.safe_load(path.read_text(encoding="utf-8")))
    if isinstance(config.get("base"), str):  # the config it layers on (nano8k.training.config), shipped beside it
        config["base"] = str(path.parent / config["base"])
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)

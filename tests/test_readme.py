"""The README keeps its two set-up commands and the troubleshooting table generated from preflight."""

from __future__ import annotations

import re
from pathlib import Path

from nano8k.checks import troubleshooting_table

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
CI = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text(encoding="utf-8")

INSTALL = "python3 -m venv .venv && .venv/bin/pip install -c requirements.lock -e '.[dev]'"


def test_two_setup_commands_and_ci_runs_the_test_one():
    setup = re.findall(r"^python3 -m venv \.venv && .*$", README, flags=re.MULTILINE)
    assert setup == [
        f"{INSTALL} && .venv/bin/nano8k fit --config configs/demo.yaml",
        f"{INSTALL} && .venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/python -m pytest -q",
    ]
    assert setup[1] in CI


def test_troubleshooting_table_is_generated_from_preflight():
    assert troubleshooting_table() in README

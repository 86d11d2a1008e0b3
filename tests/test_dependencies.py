"""requirements.lock pins every dependency pyproject.toml names, each inside its range: the lock installs as tested."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements() -> list[Requirement]:
    """The package's dependencies and its dev extras (what the README's two commands install)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(line) for line in project["dependencies"] + project["optional-dependencies"]["dev"]]


def locked() -> dict[str, str]:
    pins = {}
    for number, line in enumerate((ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines(), 1):
        if line.strip() and not line.startswith("#"):
            found = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line.strip())
            assert found, f"requirements.lock:{number}: not a name==version pin: {line!r}"
            pins[_name(found.group(1))] = found.group(2)
    return pins


def test_the_lock_pins_every_dependency_inside_its_range():
    pins = locked()
    missing = [str(r) for r in requirements() if _name(r.name) not in pins]
    outside = [
        f"{r} locked at {pins[_name(r.name)]}"
        for r in requirements()
        if _name(r.name) in pins and not r.specifier.contains(pins[_name(r.name)], prereleases=True)
    ]
    assert not missing and not outside, f"not locked: {missing}; outside the range: {outside}"


def test_every_dependency_has_an_upper_bound_below_the_next_break():
    """A new major release (or PyAV 18's dropped codec) must not reach a new install untested."""
    open_ended = [str(r) for r in requirements() if not any(s.operator in ("<", "<=", "==", "~=") for s in r.specifier)]
    assert open_ended == ["fsspec>=2023.1"], open_ended  # calendar versions: no major to stay below

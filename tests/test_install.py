"""``pip install .`` into a fresh venv, then the demo from an empty folder: ``nano8k fit`` and ``python -m nano8k.fit``.

The short form of ``benchmarks/fresh_install.py``: nano8k installed alone (the dependencies borrowed from this venv)
and 2 training steps of the demo by ``nano8k fit``, about 35 s. ``python -m nano8k.fit`` takes the same default
(``nano8k.fit.run``); the benchmark without ``--borrow_deps --max_steps`` runs the whole demo both ways, timed.
"""

from __future__ import annotations

import filecmp
import subprocess
from pathlib import Path

import pytest
import yaml

from benchmarks.fresh_install import REPO, clean_env, fresh_install
from nano8k.paths import SHIPPED

CER_LINE = "[test] held-out telephone voices (200 utts): CER before"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    work = tmp_path_factory.mktemp("fresh")
    steps = fresh_install(work, borrow_deps=True, max_steps=2)
    return work, {step.name: step for step in steps}


def test_nano8k_fit_runs_the_demo_from_an_empty_folder(installed):
    work, steps = installed
    assert steps["pip install --no-deps ."].returncode == 0, steps["pip install --no-deps ."].output[-3000:]
    fit = steps["nano8k fit"]
    assert fit.returncode == 0, fit.output[-3000:]
    assert "no --config given: the demo" in fit.output and CER_LINE in fit.output, fit.output[-3000:]
    runs = work / "empty" / "runs" / "demo"
    assert (runs / "export" / "funasr" / "model.pt").is_file()  # written in the user's folder
    config = yaml.safe_load((runs / "logs" / "version_0" / "config.yaml").read_text())  # what fit trained with
    shipped = Path(config["data"]["train_manifests"])  # the shipped corpus, wherever the package went
    assert shipped.is_file() and shipped.parts[-3:] == ("data_manifests", "telephone-digits", "train.jsonl")
    assert REPO not in shipped.parents and config["model"]["model_dir"] == "mini"


def test_the_installed_package_is_used_and_ships_the_project_files_unchanged(installed):
    work, _ = installed
    python = work / "venv" / "bin" / "python"
    where = subprocess.run(
        [str(python), "-c", "import nano8k.paths as s; print(s.INSTALLED_ROOT)"],
        cwd=work / "empty",
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    root = Path(where)
    assert REPO not in root.parents and root.is_dir()  # the wheel's copy, not this checkout
    for relative in SHIPPED:  # the repository holds one copy; the wheel's must be byte-identical to it
        comparison = filecmp.dircmp(REPO / relative, root / relative, ignore=["__pycache__"])
        assert_same_tree(comparison, relative)


def assert_same_tree(comparison: filecmp.dircmp, where: str) -> None:
    tracked_only = [name for name in comparison.left_only if not name.startswith(".")]  # manifest caches are local
    assert not tracked_only and not comparison.right_only, (where, tracked_only, comparison.right_only)
    _, mismatch, errors = filecmp.cmpfiles(comparison.left, comparison.right, comparison.common_files, shallow=False)
    assert not mismatch and not errors, (where, mismatch, errors)
    for name, sub in comparison.subdirs.items():
        assert_same_tree(sub, f"{where}/{name}")


def test_the_console_script_lists_every_subcommand(installed):
    work, _ = installed
    listed = subprocess.run(
        [str(work / "venv" / "bin" / "nano8k"), "--help"],
        cwd=work / "empty",
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    assert listed.returncode == 0, listed.stderr
    for command in ("fit", "transcribe", "evaluate", "preflight", "align", "simulate", "validate", "sweep", "average"):
        assert command in listed.stdout


def test_an_sdist_carries_every_shipped_folder():
    """MANIFEST.in must graft what setup.py copies into the wheel, or a wheel built from the sdist lacks it."""
    grafted = [line.split()[1] for line in (REPO / "MANIFEST.in").read_text().splitlines() if line.startswith("graft ")]
    assert grafted == list(SHIPPED)

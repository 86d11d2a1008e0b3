"""A new user's install, timed: ``pip install .`` into a fresh venv, then the demo from an empty folder elsewhere.

    python benchmarks/fresh_install.py                        # every dependency from PyPI (or pip's cache); the
                                                              # whole demo twice: `nano8k fit`, `python -m nano8k.fit`
    python benchmarks/fresh_install.py --borrow_deps --max_steps 2   # the short form tests/test_install.py runs:
                                                              # 2 demo steps by `nano8k fit` alone

The project is copied first (its git-tracked and untracked-but-not-ignored files), so the build sees what a clean
clone holds. ``--borrow_deps`` installs nano8k alone (``--no-deps``) and lets the fresh venv see this interpreter's
site-packages through a ``.pth`` file: the wheel, its shipped configs and corpus, the console script and the
installed imports are what is tested, without downloading torch again. Prints one line per step with its seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHORT_FIT = ("--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1", "--model.warmup_steps", "1")


@dataclass
class Step:
    """One timed command of the install and its output."""

    name: str
    seconds: float
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def line(self) -> str:
        """Its timing and its last line of output (the demo's ``[test] ... CER before ... → after ...``)."""
        lines = [line for line in self.stdout.splitlines() if line.strip()] or self.stderr.strip().splitlines()[-1:]
        tail = lines[-1] if lines else ""
        return f"[fresh-install] {self.name}: rc {self.returncode}, {self.seconds:.1f} s | {tail[:200]}"


def run_step(name: str, command: list[str], cwd: Path, env: dict[str, str] | None = None) -> Step:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    return Step(name, time.perf_counter() - start, done.returncode, done.stdout, done.stderr)


def copy_project(dest: Path) -> Path:
    """The files a clean clone of the repository holds (plus new ones git does not ignore), copied to ``dest``."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for relative in filter(None, listed):
        source = REPO / relative
        if source.is_file():
            (dest / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / relative)
    return dest


def clean_env() -> dict[str, str]:
    """This environment without what would let the repository or this venv leak into the fresh one."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.setdefault("WANDB_MODE", "offline")
    return env


def make_venv(root: Path, borrow_deps: bool) -> tuple[Path, Step]:
    """A fresh venv at ``root``; with ``borrow_deps`` it also sees this interpreter's site-packages (after its own)."""
    step = run_step("venv", [sys.executable, "-m", "venv", str(root)], root.parent, clean_env())
    if borrow_deps and step.returncode == 0:
        done = subprocess.run(
            [str(root / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        )
        borrowed = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
        Path(done.stdout.strip(), "borrowed_dependencies.pth").write_text("\n".join(sorted(borrowed)) + "\n")
    return root / "bin", step


def fresh_install(work: Path, *, borrow_deps: bool, max_steps: int | None) -> list[Step]:
    """Copy the project, ``pip install .`` it into a fresh venv, then run the demo from an empty folder: with
    ``nano8k fit`` and ``python -m nano8k.fit`` (the whole demo), or ``max_steps`` of it with ``nano8k fit`` alone."""
    source = copy_project(work / "src")
    bin_dir, venv = make_venv(work / "venv", borrow_deps)
    steps = [venv]
    pinned = ["--no-deps"] if borrow_deps else ["-c", "requirements.lock"]  # the versions the suite passed with
    install = [str(bin_dir / "pip"), "install", "--disable-pip-version-check", *pinned, "."]
    steps.append(run_step("pip install " + " ".join(pinned) + " .", install, source, clean_env()))
    if steps[-1].returncode != 0:
        return steps
    shutil.rmtree(source)  # nothing of the checkout is left to fall back on
    empty = work / "empty"
    empty.mkdir()
    fit_args = [] if max_steps is None else ["--trainer.max_steps", str(max_steps), *SHORT_FIT]
    steps.append(run_step("nano8k fit", [str(bin_dir / "nano8k"), "fit", *fit_args], empty, clean_env()))
    if max_steps is None:  # the whole path: the module form runs the demo too, from the same empty start
        shutil.rmtree(empty / "runs", ignore_errors=True)
        steps.append(
            run_step("python -m nano8k.fit", [str(bin_dir / "python"), "-m", "nano8k.fit"], empty, clean_env())
        )
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/fresh_install.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--borrow_deps", action="store_true", help="install nano8k alone and borrow this interpreter's dependencies"
    )
    parser.add_argument("--max_steps", type=int, default=None, help="a short demo (default: the whole demo)")
    parser.add_argument("--keep", type=str, default=None, help="work in this folder and keep it")
    args = parser.parse_args(argv)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="nano8k-fresh-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        steps = fresh_install(work, borrow_deps=args.borrow_deps, max_steps=args.max_steps)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    for step in steps:
        print(step.line())
    print(f"[fresh-install] total {sum(s.seconds for s in steps):.1f} s")
    return max(step.returncode for step in steps)


if __name__ == "__main__":
    sys.exit(main())

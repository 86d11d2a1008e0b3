"""The newest versions pyproject.toml allows, installed into a fresh venv and tested; ``--write`` refreshes the lock.

    python scripts/lock.py                 # fresh venv, newest allowed versions, the whole suite, what moved
    python scripts/lock.py --write         # the same; on a green suite, requirements.lock := that venv's pip freeze
    python scripts/lock.py --no_machine_constraints   # also lift a pip constraint file this machine's config names

Drift is found here, not by users: every release of a dependency inside the ranges reaches a new install the day it
is published. The lock is ``pip freeze`` of the venv the suite just passed in, so it lists exactly what was tested.
Exit status: 0 when the suite passed, 1 when it failed (the lock is then left as it was), 2 when the install failed.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
EXTRAS = "dev"  # the lock covers what the README's two commands install: the package and its test extras


def run(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``command`` in the repository root, its output streamed and kept; prints how long it took."""
    started = time.monotonic()
    print("$", " ".join(command), flush=True)
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:
        lines.append(line)
        sys.stdout.write(line)
    process.wait()
    print(f"[lock] rc {process.returncode} in {time.monotonic() - started:.0f} s", flush=True)
    return subprocess.CompletedProcess(command, process.returncode, "".join(lines), "")


def pins(text: str) -> dict[str, str]:
    """``name==version`` lines as {normalized name: version}."""
    found = (re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line) for line in text.splitlines())
    return {re.sub(r"[-_.]+", "-", m.group(1)).lower(): m.group(2) for m in found if m}


def moved(locked: dict[str, str], newest: dict[str, str]) -> list[str]:
    """One line per package whose newest allowed version differs from the lock, or that one side lacks."""
    rows = []
    for name in sorted(set(locked) | set(newest)):
        if locked.get(name) != newest.get(name):
            rows.append(f"  {name}: {locked.get(name, '-')} -> {newest.get(name, '-')}")
    return rows


def lock_text(freeze: str) -> str:
    header = (
        "# Every package version the whole suite passed with: pip freeze of a fresh venv made by\n"
        f"# `python scripts/lock.py --write` on {time.strftime('%Y-%m-%d')} "
        f"(CPython {platform.python_version()}, {platform.system()} {platform.machine()}).\n"
        "# Installed as constraints: pip install -c requirements.lock -e '.[dev]' (README, Set-up).\n"
    )
    body = [line for line in freeze.splitlines() if line and not line.startswith(("-e ", "nano8k"))]
    return header + "\n".join(body) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/lock.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="on a green suite, write requirements.lock")
    parser.add_argument("--venv", type=Path, default=None, help="where to make the venv (default: a new temp folder)")
    parser.add_argument(
        "--no_machine_constraints",
        action="store_true",
        help="lift a constraint file this machine's pip config names (PIP_CONSTRAINT=/dev/null)",
    )
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (default: the whole suite)")
    args = parser.parse_args(argv)
    if args.write and args.pytest_args:
        parser.error("--write locks what the whole suite passed with: give no pytest arguments with it")
    venv = args.venv or Path(tempfile.mkdtemp(prefix="nano8k-newest-")) / "venv"
    python = str(venv / "bin" / "python")
    env = dict(os.environ, WANDB_MODE="offline")
    if args.no_machine_constraints:
        env["PIP_CONSTRAINT"] = os.devnull
    if run([sys.executable, "-m", "venv", str(venv)]).returncode != 0:
        return 2
    install = run(
        [python, "-m", "pip", "install", "--upgrade", "--upgrade-strategy", "eager", "-e", f".[{EXTRAS}]"], env
    )
    if install.returncode != 0:
        print("[lock] the newest allowed versions do not install together; see above", flush=True)
        return 2
    freeze = run([python, "-m", "pip", "freeze", "--exclude-editable"], env).stdout
    locked = pins(LOCK.read_text(encoding="utf-8")) if LOCK.exists() else {}
    changes = moved(locked, pins(freeze))
    print(f"[lock] {len(changes)} package(s) differ from {LOCK.name}:", *changes, sep="\n", flush=True)
    suite = run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args.pytest_args], env)
    summary = next((line for line in reversed(suite.stdout.splitlines()) if " in " in line), "(no summary line)")
    print(f"[lock] suite on the newest allowed versions: {summary.strip('= ')}", flush=True)
    if suite.returncode != 0:
        print("[lock] the suite failed: tighten the range of the package that broke it (see the changes above)")
        return 1
    if args.write:
        LOCK.write_text(lock_text(freeze), encoding="utf-8")
        print(f"[lock] wrote {LOCK} ({len(pins(freeze))} packages)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

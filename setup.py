"""Build step: the wheel carries the project files the default run needs (``nano8k.paths.SHIPPED``), copied from
the project tree at build time, so the repository holds one copy of each."""

import ast
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def shipped() -> tuple[str, ...]:
    """``SHIPPED`` as nano8k/paths.py defines it (read, not imported: the build runs without nano8k's dependencies)."""
    tree = ast.parse((ROOT / "nano8k" / "paths.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "SHIPPED" for t in node.targets):
            return ast.literal_eval(node.value)
    raise RuntimeError("nano8k/paths.py defines no SHIPPED")


class BuildWithProjectFiles(build_py):
    """``build_py`` plus the shipped project files under ``nano8k/shipped/`` (an editable install reads the tree)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for relative in shipped():
            target = Path(self.build_lib) / "nano8k" / "shipped" / relative
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(ROOT / relative, target, ignore=shutil.ignore_patterns(".*"))  # no local caches


setup(cmdclass={"build_py": BuildWithProjectFiles})

"""The ``nano8k`` front door: its subcommand list, exit statuses, lazy imports, and one parser style everywhere."""

from __future__ import annotations

import ast
import subprocess
import sys
import types
from pathlib import Path

import pytest

from nano8k.__main__ import SUBCOMMANDS, Subcommand, main
from nano8k.commands import average
from nano8k.training import checkpointing

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
PARSER_SOURCES = sorted(
    [*(REPO / "nano8k").rglob("*.py"), *(REPO / "scripts").glob("*.py"), *(REPO / "benchmarks").glob("*.py")]
)
EXPECTED = [
    "fit",
    "transcribe",
    "evaluate",
    "preflight",
    "align",
    "simulate",
    "validate",
    "shards",
    "sweep",
    "average",
    "reproduce",
]


def module_source(module: str) -> Path:
    return REPO / (module.replace(".", "/") + ".py")


def hyphenated_long_options(path: Path) -> list[str]:
    """``--x-y`` options given to any ``add_argument`` call in ``path``, as ``file:line: --x-y``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            found += [
                f"{path.relative_to(REPO)}:{node.lineno}: {arg.value}"
                for arg in node.args
                if isinstance(arg, ast.Constant)
                and isinstance(arg.value, str)
                and arg.value.startswith("--")
                and "-" in arg.value[2:]
            ]
    return found


def test_help_lists_every_subcommand_with_its_purpose(capsys):
    assert list(SUBCOMMANDS) == EXPECTED
    for argv in (["--help"], ["-h"], []):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert all(f"  {name} " in out and sub.purpose in out for name, sub in SUBCOMMANDS.items())


def test_unknown_subcommand_names_it_and_the_known_ones(capsys):
    assert main(["trian", "--config", "x.yaml"]) == 2
    err = capsys.readouterr().err
    assert "unknown subcommand 'trian'" in err and all(name in err for name in EXPECTED)


def test_subcommand_exit_status_is_its_main_s(capsys):
    validate_only = ["sweep", str(REPO / "sweeps" / "lr.yaml"), "--config", str(CONFIGS / "demo.yaml")]
    assert main(validate_only) == 0
    assert "valid (grid, metric val/cer minimize)" in capsys.readouterr().out
    assert main(["sweep", str(REPO / "sweeps" / "missing.yaml")]) == 2
    assert "sweep file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # argparse's own exit passes through unchanged
        main(["align", "--no_such_option"])
    assert stop.value.code == 2


def test_subcommand_gets_the_rest_of_argv_and_its_status_is_returned_as_is(monkeypatch):
    seen = []
    command = types.ModuleType("fake_command")
    command.main = lambda argv: seen.append(argv) or 3
    monkeypatch.setitem(sys.modules, "fake_command", command)
    monkeypatch.setitem(SUBCOMMANDS, "fake", Subcommand("fake_command", "a stand-in"))
    assert main(["fake", "--a_b", "1", "x"]) == 3
    assert seen == [["--a_b", "1", "x"]]


def test_subcommand_modules_are_imported_only_when_chosen():
    modules = ["torch", *(sub.module for sub in SUBCOMMANDS.values())]
    loaded = f"print('loaded', [m for m in {modules!r} if m in sys.modules])"
    probe = (
        f"import sys; from nano8k.__main__ import main; main(['--help']); {loaded}; "
        f"main(['sweep', 'sweeps/lr.yaml', '--config', 'configs/demo.yaml']); {loaded}"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    after_help, after_sweep = [line for line in done.stdout.splitlines() if line.startswith("loaded ")]
    assert after_help == "loaded []"
    # sweep checks its parameters against --config, parsed as fit parses it (torch), and no other command's module
    assert after_sweep == "loaded ['torch', 'nano8k.commands.sweep']"


def test_console_script_is_the_front_door():
    assert '[project.scripts]\nnano8k = "nano8k.__main__:main"\n' in (REPO / "pyproject.toml").read_text(
        encoding="utf-8"
    )


@pytest.mark.parametrize("name", EXPECTED)
def test_each_command_main_returns_an_int_and_exits_with_it(name):
    tree = ast.parse(module_source(SUBCOMMANDS[name].module).read_text(encoding="utf-8"))
    mains = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "main"]
    assert len(mains) == 1 and ast.unparse(mains[0].returns) == "int"
    last = tree.body[-1]
    assert isinstance(last, ast.If) and ast.unparse(last.test) == "__name__ == '__main__'"
    assert ast.unparse(last.body[0]).startswith("sys.exit(main(")


def test_average_main_returns_its_exit_status(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_average_and_export(checkpoints, out, model_dir=None, write_ckpt=True):
        calls.append((list(checkpoints), out, model_dir, write_ckpt))
        return {"funasr": out / "funasr", "hf": out / "hf"}

    monkeypatch.setattr(checkpointing, "average_and_export", fake_average_and_export)
    assert average.main(["a.ckpt", "b.ckpt", "--out", str(tmp_path), "--no_ckpt"]) == 0
    assert main(["average", "a.ckpt", "--out", str(tmp_path)]) == 0
    assert calls == [(["a.ckpt", "b.ckpt"], tmp_path, None, False), (["a.ckpt"], tmp_path, None, True)]
    assert "[average] 2 checkpoint(s) -> " in capsys.readouterr().out


def test_no_long_option_is_hyphenated():
    assert [found for path in PARSER_SOURCES for found in hyphenated_long_options(path)] == []

"""W&B sweep files: validation against the config's keys, the local grid, and running it as ``nano8k.fit`` runs."""

from __future__ import annotations

import csv
import itertools
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nano8k.errors import SweepError, one_line
from nano8k.scoring.plots import plot_sweep
from nano8k.training.config import fold_classes, layered_config, parse_file, plain

TOP_KEYS = {
    "program",
    "command",
    "method",
    "metric",
    "parameters",
    "name",
    "description",
    "project",
    "entity",
    "early_terminate",
    "run_cap",
}
METHODS = ("grid", "random", "bayes")
GOALS = ("minimize", "maximize")
DISTRIBUTIONS = {
    "constant",
    "categorical",
    "int_uniform",
    "uniform",
    "q_uniform",
    "log_uniform",
    "log_uniform_values",
    "q_log_uniform",
    "q_log_uniform_values",
    "inv_log_uniform",
    "inv_log_uniform_values",
    "normal",
    "q_normal",
    "log_normal",
    "q_log_normal",
    "beta",
    "q_beta",
}
MACROS = {
    "${env}",
    "${interpreter}",
    "${program}",
    "${args}",
    "${args_no_hyphens}",
    "${args_no_boolean_flags}",
    "${args_json}",
    "${args_json_file}",
    "${args_no_equals}",
}
VAL_LINE = re.compile(r"^\[val\] step (\d+)\s+(.*)$")


def load_sweep(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"{path}: sweep file not found")
    try:
        with open(path, encoding="utf-8") as stream:  # a stream: PyYAML's message names the file, not <unicode string>
            data = yaml.safe_load(stream)
    except yaml.YAMLError as err:
        raise SweepError(f"{path}: not valid YAML ({one_line(err)})") from None
    if not isinstance(data, dict):
        raise SweepError(f"{path}: expected a mapping (program/command, method, metric, parameters)")
    return data


def base_config(sweep: Mapping[str, Any]) -> str | None:
    """The ``--config`` file named in the sweep's command, if any."""
    command = [str(c) for c in sweep.get("command") or []]
    for i, chunk in enumerate(command):
        if chunk == "--config" and i + 1 < len(command):
            return command[i + 1]
        if chunk.startswith("--config="):
            return chunk.split("=", 1)[1]
    return None


def validate_sweep(sweep: Mapping[str, Any], source: str = "sweep", *, config: str | None = None) -> list[str]:
    """Problems with a W&B sweep config (empty list = valid); parameter names are checked against ``config`` (a
    ``--config`` given instead of the command's), else the config the sweep's command names."""
    errors = []
    unknown = set(sweep) - TOP_KEYS
    if unknown:
        errors.append(f"{source}: unknown top-level key(s) {sorted(unknown)}")
    if sweep.get("method") not in METHODS:
        errors.append(f"{source}: method must be one of {METHODS}, got {sweep.get('method')!r}")
    metric = sweep.get("metric")
    if not isinstance(metric, Mapping) or not metric.get("name") or metric.get("goal") not in GOALS:
        errors.append(f"{source}: metric needs name and goal ({'/'.join(GOALS)}), got {metric!r}")
    command = sweep.get("command")
    if command is None and not sweep.get("program"):
        errors.append(f"{source}: give program or command")
    if command is not None:
        if not isinstance(command, list) or not all(isinstance(c, str) for c in command):
            errors.append(f"{source}: command must be a list of strings")
        else:
            for chunk in command:
                if chunk.startswith("${") and chunk not in MACROS and not chunk.startswith("${envvar:"):
                    errors.append(f"{source}: command uses unknown macro {chunk}")
            if not any(c.startswith("${args") for c in command):
                errors.append(f"{source}: command must pass the parameters (${{args}})")
            if "${program}" in command and not sweep.get("program"):
                errors.append(f"{source}: command uses ${{program}} but program is not set")
    params = sweep.get("parameters")
    if not isinstance(params, Mapping) or not params:
        errors.append(f"{source}: parameters must be a non-empty mapping")
        return errors
    for name, spec in params.items():
        where = f"{source}: parameters.{name}"
        if not isinstance(spec, Mapping):
            errors.append(f"{where}: expected a mapping with value, values or distribution/min/max")
            continue
        kinds = [k for k in ("value", "values", "min") if k in spec]
        if len(kinds) != 1:
            errors.append(f"{where}: give exactly one of value, values, or min/max (+ distribution)")
            continue
        if "values" in spec and (not isinstance(spec["values"], list) or not spec["values"]):
            errors.append(f"{where}: values must be a non-empty list")
        if "min" in spec:
            dist = spec.get("distribution", "uniform")
            if dist not in DISTRIBUTIONS:
                errors.append(f"{where}: unknown distribution {dist!r}")
            if "max" not in spec or not float(spec["min"]) < float(spec["max"]):
                errors.append(f"{where}: needs min < max")
            elif dist.endswith("_values") and float(spec["min"]) <= 0:
                errors.append(f"{where}: {dist} needs min > 0 (values, not exponents)")
            if sweep.get("method") == "grid":
                errors.append(f"{where}: method grid needs values, not a {dist} range")
    return errors + _check_parameter_keys(sweep, source, config)


def _check_parameter_keys(sweep: Mapping[str, Any], source: str, config: str | None = None) -> list[str]:
    config_path = config or base_config(sweep)
    if config_path is None:
        return []
    if not Path(config_path).is_file():
        given = "--config" if config else "command's --config"
        return [f"{source}: {given} {config_path} not found (run from the repository root)"]
    try:
        config = parse_file(config_path)
    except ValueError as err:  # not valid YAML, not a mapping: named by load_config
        return [f"{source}: {one_line(err)}"]
    return [
        f"{source}: parameters.{name} is not a key of {config_path} (LightningCLI keys look like model.lr)"
        for name in sweep["parameters"]
        if not has_key(config, name)
    ]


def has_key(config: Any, dotted: str) -> bool:
    """Whether fit's parsed ``config`` has ``dotted`` (``model.lr``; a callback's ``trainer.callbacks.Name.arg``)."""
    tree: Any = fold_classes(config.as_dict())
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return False
        tree = tree[part]
    return True


def _points(spec: Mapping[str, Any], n: int) -> list[Any]:
    """Values of one parameter for the local grid: its values, or ``n`` evenly spaced points of its range."""
    if "value" in spec:
        return [spec["value"]]
    if "values" in spec:
        return list(spec["values"])
    lo, hi = float(spec["min"]), float(spec["max"])
    dist = spec.get("distribution", "uniform")
    if n == 1:
        return [math.sqrt(lo * hi) if "log" in dist else (lo + hi) / 2]
    if dist in ("log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values"):
        pts = [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]
    elif dist in ("log_uniform", "q_log_uniform"):  # min/max are natural-log exponents
        pts = [math.exp(lo + (hi - lo) * i / (n - 1)) for i in range(n)]
    else:
        pts = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
    if dist == "int_uniform":
        pts = sorted({int(round(p)) for p in pts})
    return [float(f"{p:.3g}") if isinstance(p, float) else p for p in pts]


def expand_grid(
    sweep: Mapping[str, Any], points: int = 3, override: Mapping[str, list[Any]] | None = None
) -> list[dict[str, Any]]:
    """Cartesian product of every parameter's local values (``override`` replaces a parameter's values; naming one
    the sweep does not have is a ``SweepError``, not a silently unused value)."""
    override = override or {}
    names = list(sweep["parameters"])
    unknown = [name for name in override if name not in names]
    if unknown:
        raise SweepError(
            f"--grid {', '.join(unknown)}: not a parameter of the sweep (its parameters: {', '.join(names)})"
        )
    values = [override.get(name) or _points(sweep["parameters"][name], points) for name in names]
    return [dict(zip(names, combo)) for combo in itertools.product(*values)]


def render_args(params: Mapping[str, Any]) -> list[str]:
    """``--key=value`` exactly as ``wandb agent`` renders ``${args}``."""
    try:
        from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

        return create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})["args"]
    except ImportError:  # same format as wandb 0.31
        return [f"--{k}={v}" for k, v in params.items()]


def command_for(sweep: Mapping[str, Any], params: Mapping[str, Any], config: str, extra: Sequence[str]) -> list[str]:
    """The agent's command with ${interpreter} = this Python, ${env} dropped, --config replaced by ``config``."""
    command = list(sweep.get("command") or ["${env}", "${interpreter}", "${program}", "${args}"])
    out: list[str] = []
    skip = False
    for chunk in command:
        if skip:
            skip = False
            continue
        if chunk == "${env}":
            continue
        if chunk == "${interpreter}":
            out.append(sys.executable)
        elif chunk == "${program}":
            out.append(str(sweep["program"]))
        elif chunk == "${args}":
            out += render_args(params) + list(extra)
        elif chunk == "--config":
            out += ["--config", config]
            skip = True
        elif chunk.startswith("--config="):
            out.append(f"--config={config}")
        else:
            out.append(chunk)
    if not any(c == "--config" or c.startswith("--config=") for c in out):
        at = next((i + 1 for i, c in enumerate(out) if c in ("nano8k.fit", str(sweep.get("program")))), len(out))
        out[at:at] = ["--config", config]
    return out


def isolate(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Point every output path of a LightningCLI config (root dir, logger, checkpoint/export dirs) into ``run_dir``."""
    config = yaml.safe_load(yaml.safe_dump(config))  # deep copy
    trainer = config.setdefault("trainer", {})
    trainer["default_root_dir"] = str(run_dir)
    logger = trainer.get("logger")
    for item in logger if isinstance(logger, list) else [logger]:
        if isinstance(item, dict) and "class_path" in item:
            args = item.setdefault("init_args", {})
            args["save_dir"] = str(run_dir)
    for cb in trainer.get("callbacks") or []:
        if isinstance(cb, dict):
            args = cb.get("init_args") or {}
            for key in ("dirpath", "out_dir"):
                if args.get(key):
                    args[key] = str(run_dir / Path(str(args[key])).name)
    return config


def read_metric(run_dir: Path, stdout: str, metric: str) -> list[tuple[int, float]]:
    """(step, value) of ``metric`` from the run's metrics.csv files, else from its ``[val] step N  cer X`` lines."""
    values: list[tuple[int, float]] = []
    for path in sorted(run_dir.rglob("metrics.csv")):
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get(metric) not in (None, ""):
                    values.append((int(float(row.get("step") or 0)), float(row[metric])))
    if values:
        return values
    short = metric.split("/", 1)[-1]
    for line in stdout.splitlines():
        match = VAL_LINE.match(line.strip())
        if match:
            tokens = match.group(2).split()
            pairs = dict(zip(tokens[::2], tokens[1::2]))
            if short in pairs:
                values.append((int(match.group(1)), float(pairs[short])))
    return values


@dataclass
class PointResult:
    """One grid point's outcome."""

    index: int
    params: dict[str, Any]
    returncode: int
    best: float | None
    last: float | None
    step: int | None
    seconds: float
    run_dir: str
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, metric) at each validation


def run_local(
    sweep_path: str | Path,
    *,
    config: str | None = None,
    out_dir: str | Path = "runs/sweep",
    points: int = 3,
    override: Mapping[str, list[Any]] | None = None,
    max_steps: int | None = None,
    limit_val_batches: int | None = None,
    extra_args: Sequence[str] = (),
    timeout: float | None = None,
    echo: bool = True,
) -> list[PointResult]:
    """Run every grid point as ``python -m nano8k.fit`` subprocess (WANDB_MODE=offline) and collect the metric."""
    sweep = load_sweep(sweep_path)
    errors = validate_sweep(sweep, str(sweep_path), config=config)
    if errors:
        raise SweepError("\n".join(errors))
    config = config or base_config(sweep)
    if config is None:
        raise SweepError(f"{sweep_path}: the command names no --config; pass --config")
    base = layered_config(config)
    metric, goal = sweep["metric"]["name"], sweep["metric"]["goal"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extra = list(extra_args)
    if max_steps is not None:
        extra += [
            f"--trainer.max_steps={max_steps}",
            f"--trainer.val_check_interval={max_steps}",
            "--trainer.check_val_every_n_epoch=null",
            "--trainer.max_epochs=-1",
        ]
    if limit_val_batches is not None:
        extra.append(f"--trainer.limit_val_batches={limit_val_batches}")
    results = []
    for index, params in enumerate(expand_grid(sweep, points, override)):
        run_dir = (out / f"point{index:02d}").resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
        derived = run_dir / "config.yaml"
        derived.write_text(yaml.safe_dump(isolate(base, run_dir), sort_keys=False), encoding="utf-8")
        command = command_for(sweep, params, str(derived), extra)
        env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(run_dir)}
        if echo:
            print(f"[sweep] point {index}: {params}", flush=True)
        start = time.monotonic()
        try:
            proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
            rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as err:
            rc, stdout, stderr = 124, str(err.stdout or ""), str(err.stderr or "")
        seconds = time.monotonic() - start
        (run_dir / "stdout.log").write_text(stdout, encoding="utf-8")
        (run_dir / "stderr.log").write_text(stderr, encoding="utf-8")
        (run_dir / "command.txt").write_text(" ".join(command) + "\n", encoding="utf-8")
        values = read_metric(run_dir, stdout, metric)
        pick = min if goal == "minimize" else max
        best = pick(v for _, v in values) if values else None
        last = values[-1][1] if values else None
        results.append(
            PointResult(
                index, dict(params), rc, best, last, values[-1][0] if values else None, seconds, str(run_dir), values
            )
        )
        if echo:
            status = "ok" if rc == 0 else f"exit {rc} (see {run_dir}/stderr.log)"
            print(f"[sweep] point {index}: {metric} best {best} last {last}, {seconds:.0f} s, {status}", flush=True)
    return results


def swept_parameter(names: Sequence[str]) -> str | None:
    """The parameter a sweep's plot puts on its x axis: the learning rate if swept, else the first one."""
    return next((n for n in names if n.split(".")[-1] == "lr"), names[0] if names else None)


def write_results(results: Sequence[PointResult], metric: str, goal: str, out_dir: str | Path) -> tuple[Path, ...]:
    """``results.csv``, ``results.md`` (sorted best first; failed points last) and ``results.png`` (the metric
    against the learning rate, or the first swept parameter, beside the metric over steps; linked from the table)."""
    out = Path(out_dir)
    names = list(results[0].params) if results else []
    sign = 1 if goal == "minimize" else -1
    ordered = sorted(results, key=lambda r: (r.best is None, sign * (r.best or 0.0)))
    header = ["point", *names, f"best {metric}", f"last {metric}", "last step", "exit", "seconds", "run_dir"]
    rows = [
        [r.index, *(r.params[n] for n in names), r.best, r.last, r.step, r.returncode, f"{r.seconds:.1f}", r.run_dir]
        for r in ordered
    ]
    csv_path, md_path = out / "results.csv", out / "results.md"
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    fmt = lambda v: "—" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = [f"| {' | '.join(header)} |", "|" + "---|" * len(header)]
    lines += [f"| {' | '.join(fmt(v) for v in row)} |" for row in rows]
    parameter = swept_parameter(names)
    plotted = [r for r in results if isinstance(r.params.get(parameter), (int, float))]
    (out / "results.png").unlink(missing_ok=True)  # never a plot of an earlier sweep beside this table
    if plotted:
        png = plot_sweep([vars(r) for r in plotted], parameter, metric, out / "results.png")
        lines += ["", f"![{metric} vs {parameter}]({png.name})"]
    md_path.write_text(
        f"Local sweep, metric {metric} ({goal}); best first.\n\n" + "\n".join(lines) + "\n", encoding="utf-8"
    )
    return (csv_path, md_path, png) if plotted else (csv_path, md_path)


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``--grid key=v1,v2`` items as {key: [values]}, each value read as YAML."""
    grid = {}
    for item in items:
        if "=" not in item:
            raise SweepError(f"--grid {item!r}: expected key=v1,v2,...")
        key, _, values = item.partition("=")
        grid[key] = [plain(yaml.safe_load(v)) for v in values.split(",") if v]
    return grid

"""PNG charts of scores: CER per group of an evaluation report, and a sweep's metric against its hyperparameter."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_groups(report: Mapping[str, Any], path: str | Path) -> Path:
    """CER per group, one panel per grouping field (the overall CER dashed), each bar labelled with its utterances;
    a group with nothing to score gets no bar and the label n/a."""
    plt = pyplot()
    fields = list(report["groups"]) or ["overall"]
    fig, axes = plt.subplots(1, len(fields), figsize=(max(4.0, 3.2 * len(fields)), 3.4), squeeze=False)
    overall = report["overall"]["cer"]
    for ax, name in zip(axes[0], fields):
        blocks = report["groups"].get(name, {"all": report["overall"]})
        labels = list(blocks)
        values = [blocks[v]["cer"] for v in labels]
        bars = ax.bar(range(len(labels)), [v or 0.0 for v in values], color="#4c72b0")
        for bar, label, value in zip(bars, labels, values):
            if value is None:
                bar.set_visible(False)
            ax.annotate(
                "n/a" if value is None else f"n={blocks[label]['utterances']}",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
            )
        if overall is not None:
            ax.axhline(overall, color="#c44e52", linestyle="--", linewidth=1, label=f"overall {overall:.3f}")
            ax.legend(fontsize=7, loc="upper right")
        ax.set_xticks(range(len(labels)), [label[:14] for label in labels], rotation=30, ha="right", fontsize=8)
        ax.set_title(f"CER by {name}", fontsize=9)
        ax.set_ylim(0, max([v or 0.0 for v in values] + [overall or 0.0, 1e-3]) * 1.25)
    fig.suptitle(f"normalizer: {report['normalizer']}", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sweep(points: Sequence[Mapping[str, Any]], parameter: str, metric: str, path: str | Path) -> Path:
    """``metric`` (each point's best) against ``parameter``, log-x when it spans over 10x, one line per setting of
    the other parameters; beside it, each point's metric over the optimizer steps it was validated at."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    lines: dict[str, list[tuple[float, float]]] = {}
    for point in points:
        others = ", ".join(f"{k}={v}" for k, v in point["params"].items() if k != parameter)
        if point["best"] is not None:
            lines.setdefault(others, []).append((float(point["params"][parameter]), point["best"]))
        curve = point.get("curve") or []
        if curve:
            right.plot(
                [s for s, _ in curve],
                [v for _, v in curve],
                marker=".",
                label=f"{parameter}={point['params'][parameter]}" + (f", {others}" if others else ""),
            )
    for others, xy in lines.items():
        xy.sort()
        left.plot([x for x, _ in xy], [y for _, y in xy], marker="o", label=others or None)
    xs = [float(p["params"][parameter]) for p in points]
    if xs and min(xs) > 0 and max(xs) / min(xs) > 10:
        left.set_xscale("log")
    left.set_xlabel(parameter)
    left.set_ylabel(f"best {metric}")
    left.set_title(f"best {metric} per point", fontsize=9)
    if any(lines) and len(lines) > 1:
        left.legend(fontsize=7)
    right.set_xlabel("optimizer step")
    right.set_ylabel(metric)
    right.set_title(f"{metric} at each validation", fontsize=9)
    if right.lines:
        right.legend(fontsize=7)
    finite = [v for xy in lines.values() for _, v in xy if math.isfinite(v)]
    if finite:
        left.set_ylim(0, max(finite) * 1.15)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""``python -m nano8k.sweep sweeps/lr.yaml --local``: check a W&B sweep file and run its grid offline into a table."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jsonargparse import ArgumentParser

from nano8k.errors import SweepError, command, fail
from nano8k.training.config import split_overrides
from nano8k.training.sweeps import expand_grid, load_sweep, parse_grid, run_local, validate_sweep, write_results


@command
def main(argv: Sequence[str] | None = None) -> int:
    """Validate a sweep file (exit 2 on problems); with --local run its grid and write results.csv/.md/.png."""
    parser = ArgumentParser(prog="python -m nano8k.sweep", description=__doc__)
    parser.add_argument("sweep", help="W&B sweep YAML (e.g. sweeps/lr.yaml)")
    parser.add_argument("--local", action="store_true", help="run the grid here, offline (else: validate only)")
    parser.add_argument("--config", help="LightningCLI config instead of the one in the sweep's command")
    parser.add_argument("--out", default="runs/sweep", help="folder for runs and results.csv/results.md")
    parser.add_argument("--points", type=int, default=3, help="points per min/max range (log-spaced for log_*)")
    parser.add_argument("--grid", nargs="*", default=[], metavar="KEY=V1,V2", help="replace a parameter's values")
    parser.add_argument("--max_steps", type=int, help="short runs: max_steps N, validate at step N")
    parser.add_argument("--limit_val_batches", type=int, help="validate on this many batches")
    parser.add_argument("--timeout", type=float, help="seconds per point")
    own, extra = split_overrides(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(own)
    try:
        sweep = load_sweep(args.sweep)
        errors = validate_sweep(sweep, args.sweep, config=args.config)
        if errors:
            print("\n".join(f"error: {e}" for e in errors), file=sys.stderr)
            return 2
        if not args.local:
            grid = expand_grid(sweep, args.points, parse_grid(args.grid))
            print(
                f"{args.sweep}: valid ({sweep['method']}, metric {sweep['metric']['name']} "
                f"{sweep['metric']['goal']}); local grid has {len(grid)} point(s): {grid}"
            )
            print(f"run with W&B: wandb sweep {args.sweep} && wandb agent <entity/project/sweep_id>")
            return 0
        results = run_local(
            args.sweep,
            config=args.config,
            out_dir=args.out,
            points=args.points,
            override=parse_grid(args.grid),
            max_steps=args.max_steps,
            limit_val_batches=args.limit_val_batches,
            extra_args=extra,
            timeout=args.timeout,
        )
    except (SweepError, OSError) as err:
        fail(str(err))
    written = write_results(results, sweep["metric"]["name"], sweep["metric"]["goal"], args.out)
    print(written[1].read_text(encoding="utf-8"))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0 if all(r.returncode == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

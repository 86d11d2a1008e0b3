"""``nano8k shards MANIFEST... --out DIR``: write manifests as WebDataset tar shards for streaming training."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from jsonargparse import ArgumentParser

from nano8k.data.audio import MULTICHANNEL_POLICIES
from nano8k.data.badsamples import BadSampleLog
from nano8k.data.manifests.io import load_utterances
from nano8k.data.pipeline.shards import write_shards
from nano8k.errors import command, fail


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m nano8k.data.shards",
        description="Write manifests as WebDataset tar shards for streaming training (data.train_shards).",
    )
    parser.add_argument("manifests", nargs="+", help="manifests (any format nano8k reads)")
    parser.add_argument("--out", required=True, help="folder to write the shards into")
    parser.add_argument(
        "--shard_size",
        type=int,
        default=1000,
        help="utterances per shard: the bucketing buffer and the most a resume re-reads",
    )
    parser.add_argument("--seed", type=int, default=0, help="the shuffle of utterances over shards")
    parser.add_argument("--multichannel", choices=MULTICHANNEL_POLICIES, default="error")
    parser.add_argument("--on_bad_sample", choices=["error", "skip"], default="error")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log = BadSampleLog(args.on_bad_sample, 1.0 if args.on_bad_sample == "skip" else 0.0, name="shards")
    try:
        utts = load_utterances(args.manifests, log, multichannel=args.multichannel)
        summary = write_shards(
            utts, args.out, shard_size=args.shard_size, seed=args.seed, multichannel=args.multichannel, log=log
        )
    except ValueError as exc:  # a DataError (a UserError) too: one error: line, exit 2
        fail(str(exc))
    print(
        f"wrote {summary['utterances']} utterances in {len(summary['shards'])} shards to {args.out} "
        f"({log.count} bad skipped); train on them with --data.train_shards {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

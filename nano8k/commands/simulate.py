"""``nano8k simulate IN_MANIFEST... OUT_MANIFEST OUT_DIR`` (an offline telephone channel) or ``--preview N OUT``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import yaml
from jsonargparse import ArgumentParser

from nano8k.data.audio import MULTICHANNEL_POLICIES
from nano8k.data.badsamples import BadSampleLog
from nano8k.data.channel.simulate import channel_from_config, preview, simulate_manifest
from nano8k.data.channel.telephone import PROFILES
from nano8k.data.manifests.io import load_utterances, write_chatml
from nano8k.errors import command, fail


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m nano8k.simulate", description=__doc__)
    parser.add_argument(
        "paths",
        nargs="*",
        help="IN_MANIFEST... OUT_MANIFEST OUT_DIR (with --preview: optional "
        "input manifests; default the bundled clean clips)",
    )
    parser.add_argument(
        "--preview",
        nargs=2,
        metavar=("N", "OUT"),
        help="write N example WAVs per profile and spectrograms.png into OUT",
    )
    parser.add_argument("--config", help="YAML with data.telephone (a fit config), a telephone: section, or its fields")
    parser.add_argument(
        "--profile",
        action="append",
        dest="profiles",
        metavar="NAME",
        help=f"use only these profiles, equally weighted (built-in: {', '.join(PROFILES)}; default: "
        "the config's, else landline; --preview: all built-in)",
    )
    parser.add_argument("--noise", help="folder or manifest of recorded background noise (MUSAN noise/)")
    parser.add_argument("--rir", help="folder or manifest of room impulse responses (RIRS_NOISES)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_rate", type=int, choices=[8000, 16000], default=None)
    parser.add_argument("--on_bad_sample", choices=["error", "skip"], default="error")
    parser.add_argument("--max_bad_fraction", type=float, default=0.0)
    parser.add_argument(
        "--multichannel",
        choices=MULTICHANNEL_POLICIES,
        default="error",
        help="a multi-channel file whose utterance names no channel: error, first, or mix",
    )
    parser.add_argument("--suffix", default="", help="appended to keys and file names")
    args = parser.parse_args(argv)
    if args.preview and not (args.preview[0].isdigit() and int(args.preview[0]) > 0):
        parser.error(f"--preview N OUT: N must be a whole number of examples > 0, got {args.preview[0]!r}")
    if args.preview and not args.profiles and not args.config:
        args.profiles = list(PROFILES)  # preview every built-in profile
    try:
        channel = channel_from_config(
            args.config,
            {
                "output_rate": args.output_rate,
                "noise": args.noise,
                "rir": args.rir,
                "profiles": {name: 1.0 for name in args.profiles} if args.profiles else None,
            },
        )
    except (ValueError, OSError, yaml.YAMLError) as exc:  # DataError too: one error: line, exit 2 (@command)
        fail(str(exc))
    for line in channel.describe():
        print(f"profile {line}")
    if args.preview:
        png = preview(channel, int(args.preview[0]), Path(args.preview[1]), args.paths, args.seed, args.multichannel)
        print(f"wrote {args.preview[0]} examples per profile and {png}")
        return 0
    if len(args.paths) < 3:
        parser.error("give IN_MANIFEST... OUT_MANIFEST OUT_DIR (or --preview N OUT)")
    *inputs, out_manifest, out_dir_name = args.paths
    log = BadSampleLog(args.on_bad_sample, args.max_bad_fraction, name="simulate")
    out_dir = Path(out_dir_name)
    utts = load_utterances(inputs, log, probe=True, multichannel=args.multichannel)  # a DataError: @command's line
    done, params_path = simulate_manifest(channel, utts, out_dir, args.seed, args.multichannel, args.suffix)
    write_chatml(done, out_manifest)
    print(f"simulated {len(done)} utterances into {out_dir} (params in {params_path}); manifest {out_manifest}")
    if log.count:
        print(log.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())

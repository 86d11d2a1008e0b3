"""``nano8k SUB`` / ``python -m nano8k SUB``: each subcommand's ``nano8k.commands`` module, imported on use."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import NamedTuple

from nano8k.errors import USAGE_EXIT

HELP_FLAGS = ("-h", "--help")


class Subcommand(NamedTuple):
    module: str  # its ``main(argv) -> int`` runs the subcommand
    purpose: str


SUBCOMMANDS: dict[str, Subcommand] = {
    "fit": Subcommand("nano8k.commands.fit", "fine-tune with a LightningCLI config (--config configs/X.yaml)"),
    "transcribe": Subcommand("nano8k.commands.transcribe", "audio files or a manifest -> text"),
    "evaluate": Subcommand(
        "nano8k.commands.evaluate", "decode a manifest and report CER / WER / MER, overall and per group"
    ),
    "preflight": Subcommand("nano8k.commands.preflight", "the pre-training checklist for a config"),
    "align": Subcommand("nano8k.commands.align", "a config's alignment table against another (the recipe's)"),
    "simulate": Subcommand("nano8k.commands.simulate", "pass a manifest's audio through a simulated telephone channel"),
    "validate": Subcommand("nano8k.commands.validate", "check every manifest line; convert to ChatML or Lhotse"),
    "shards": Subcommand("nano8k.commands.shards", "write manifests as WebDataset tar shards for streaming training"),
    "sweep": Subcommand("nano8k.commands.sweep", "validate a W&B sweep file and run its grid offline into a table"),
    "average": Subcommand("nano8k.commands.average", "average checkpoints' weights and export FunASR + HF layouts"),
    "reproduce": Subcommand("nano8k.commands.reproduce", "the telephone recipe's claims measured at mini scale"),
}


def usage() -> str:
    """The subcommands, one line each with its purpose."""
    width = max(map(len, SUBCOMMANDS))
    rows = [f"  {name:<{width}}  {sub.purpose}" for name, sub in SUBCOMMANDS.items()]
    return "\n".join(
        [
            "usage: nano8k <subcommand> [args...]",
            "",
            "subcommands:",
            *rows,
            "",
            "nano8k SUB is python -m nano8k.SUB (validate, shards: nano8k.data.SUB); nano8k SUB -h lists its options.",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``argv[0]``'s ``main(argv[1:])`` and return its exit status (its SystemExit passes through)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in HELP_FLAGS:
        print(usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"nano8k: unknown subcommand {name!r} (known: {', '.join(SUBCOMMANDS)})", file=sys.stderr)
        return USAGE_EXIT
    return importlib.import_module(SUBCOMMANDS[name].module).main(rest)


if __name__ == "__main__":
    sys.exit(main())

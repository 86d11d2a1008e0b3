"""``python -m nano8k.transcribe``: audio files or a manifest -> text, batched greedy decoding."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Sequence

from jsonargparse import ArgumentParser

from nano8k.errors import OutputError, command
from nano8k.inference.api import load_for_inference
from nano8k.inference.arguments import (
    add_decode_arguments,
    check_output,
    decode_options,
    open_output,
    output_record,
    utterances_from_files,
    utterances_from_manifest,
)
from nano8k.inference.decode import Transcript, decode_feeding, transcribe_utterances


@command
def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m nano8k.transcribe", description=__doc__)
    parser.add_argument("files", nargs="*", help="audio files (or use --manifest)")
    parser.add_argument(
        "--manifest",
        type=str | None,
        default=None,
        help="ChatML / {key,source,target} jsonl / Kaldi / Lhotse; transcripts are not needed",
    )
    parser.add_argument(
        "--output",
        type=str | None,
        default=None,
        help="also write {key, audio, text} jsonl here, one line per utterance as its batch is "
        "decoded (shortest first)",
    )
    parser.add_argument(
        "--channel",
        type=int | None,
        default=None,
        help="decode this channel (0-based) of each file given (a manifest names its own channels)",
    )
    add_decode_arguments(parser)
    args = parser.parse_args(argv)
    if bool(args.files) == bool(args.manifest):
        parser.error("give audio files or --manifest (one of them)")
    options = decode_options(args)
    if args.manifest and args.channel is not None:
        parser.error("--channel applies to audio files; a manifest gives each utterance's channel")
    output = check_output(args.output) if args.output else None
    utts = (
        utterances_from_manifest(args.manifest, transcripts=False)
        if args.manifest
        else utterances_from_files(args.files, args.channel)
    )
    model = load_for_inference(args.model_dir, args.device, args.llm_dtype)
    for notice in decode_feeding(model, options)[1]:
        print(f"notice: --{notice}", file=sys.stderr)
    out = open_output(output) if output else None
    written = 0
    try:

        def write(batch: Sequence[Transcript]) -> None:
            nonlocal written
            for result in batch:
                out.write(json.dumps(output_record(result), ensure_ascii=False) + "\n")
            out.flush()
            written += len(batch)

        results = transcribe_utterances(model, utts, options, on_batch=write if out else None)
        if out:
            out.close()
    except OSError as exc:  # a full disk, a device that takes no more (/dev/full)
        raise OutputError(
            f"--output {output}: writing failed after {written} of {len(utts)} transcripts "
            f"({exc.strerror or exc}); free space or name another file"
        ) from exc
    finally:
        if out and not out.closed:
            with contextlib.suppress(OSError):
                out.close()
    for result in results:
        if result.error:
            print(f"{result.utt.key}: {result.error}", file=sys.stderr)
        else:
            print(f"{result.utt.key}\t{result.text}", flush=True)
    failed = sum(result.error is not None for result in results)
    if failed:
        print(f"{failed} of {len(results)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

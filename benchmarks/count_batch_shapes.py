"""Distinct batch shapes in one training epoch for padding multiples: what an accelerator's kernels must plan for.

Every new (batch size, padded length) shape makes cuDNN attention (and ``torch.compile``) build a plan; padding the
feature and token widths up to a multiple (``data.pad_frames_to_multiple`` / ``data.pad_tokens_to_multiple``)
bounds their number at the cost of some padding. For each pair of multiples this builds the config's training
loader exactly as ``nano8k.fit`` does and walks one epoch:

    python benchmarks/count_batch_shapes.py --config configs/demo.yaml --multiples 1:1,8:8,16:8,32:16,64:16
"""

from __future__ import annotations

import argparse
import sys

from nano8k.data.pipeline.datamodule import TelephoneDataModule
from nano8k.model.batch import SpeechBatch
from nano8k.training.config import NanoCLI
from nano8k.training.module import NanoASRModule


def epoch_shapes(config: str, frames: int, tokens: int, epoch: int = 0) -> dict[str, float]:
    """Distinct (B, frames), (B, tokens) and (B, frames, tokens) shapes of one training epoch, and the padding."""
    cli = NanoCLI(
        NanoASRModule,
        TelephoneDataModule,
        subclass_mode_model=False,
        run=False,
        args=[
            "--config",
            config,
            "--preflight",
            "false",
            "--trainer.logger",
            "false",
            "--data.pad_frames_to_multiple",
            str(frames),
            "--data.pad_tokens_to_multiple",
            str(tokens),
        ],
    )
    data = cli.datamodule
    data.connect(cli.model.model)
    data.setup("fit")
    loader = data.train_dataloader()
    loader.batch_sampler.set_epoch(epoch)
    encoder, llm, both = set(), set(), set()
    real = padded = batches = 0
    for batch in loader:
        if not isinstance(batch, SpeechBatch):
            continue
        size, width, length = len(batch), batch.feats.shape[1], batch.input_ids.shape[1]
        encoder.add((size, width))
        llm.add((size, length))
        both.add((size, width, length))
        real += int(batch.feat_lens.sum())
        padded += size * width
        batches += 1
    return {
        "batches": batches,
        "encoder_shapes": len(encoder),
        "llm_shapes": len(llm),
        "shapes": len(both),
        "frame_padding": 1 - real / max(1, padded),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--multiples", default="1:1,8:8,16:8,32:16,64:16", help="frames:tokens pairs, comma list")
    args = parser.parse_args(argv)
    print(f"one training epoch of {args.config}\n")
    print(
        "| frames multiple | tokens multiple | batches | (B, frames) shapes | (B, tokens) shapes | "
        "(B, frames, tokens) shapes | frame padding |"
    )
    print("|---|---|---|---|---|---|---|")
    for pair in args.multiples.split(","):
        frames, tokens = (int(v) for v in pair.split(":"))
        row = epoch_shapes(args.config, frames, tokens)
        print(
            f"| {frames} | {tokens} | {row['batches']} | {row['encoder_shapes']} | {row['llm_shapes']} | "
            f"{row['shapes']} | {100 * row['frame_padding']:.1f} % |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Generate data_manifests/telephone-digits: the demo's 8 kHz telephone fine-tuning corpus (spoken digit strings).

English and Mandarin digit strings from espeak-ng (``nano8k.mini.corpus``), passed through nano8k's simulated
landline (``TelephoneChannel``: 8 kHz, 300-3400 Hz band-pass, G.711 mu/A-law, noise at 15-25 dB SNR, level, hum) and
stored the way call recorders store them: G.711 WAV at 8 kHz (the codec's own bytes, so nothing is lost). Val and
test use espeak-ng voices that neither this corpus's train split nor the mini model's pretraining ever used.

Usage (the output is committed; CI never regenerates it):
    apt-get install -y espeak-ng
    python scripts/make_telephone_digits.py --out data_manifests/telephone-digits
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from nano8k.data.channel.telephone import TelephoneChannel, landline
from nano8k.mini.corpus import Rendering, plan_split, write_corpus

SEED = 8008


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="data_manifests/telephone-digits")
    parser.add_argument("--train_per_lang", type=int, default=400)
    parser.add_argument("--val_per_lang", type=int, default=50)
    parser.add_argument("--test_per_lang", type=int, default=100)
    parser.add_argument("--max_digits", type=int, default=7)
    args = parser.parse_args()
    counts = {"train": args.train_per_lang, "val": args.val_per_lang, "test": args.test_per_lang}
    splits = {
        split: [
            u for lang in ("en", "zh") for u in plan_split(split, lang, n, SEED, max_len=args.max_digits, prefix="tel_")
        ]
        for split, n in counts.items()
    }
    channel = TelephoneChannel(
        custom_profiles={"landline": landline(snr_db=(15.0, 25.0), hum_prob=0.1)}, output_rate=8000
    )
    paths = write_corpus(args.out, splits, Rendering(channel=channel, seed=SEED))
    for split, path in paths.items():
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        secs = [r["duration"] for r in rows]
        print(
            f"{split}: {len(rows)} utts, {sum(secs) / 60:.1f} min, {min(secs):.2f}-{max(secs):.2f} s, "
            f"langs {dict(Counter(r['lang'] for r in rows))}, {len({r['voice'] for r in rows})} voices, "
            f"codecs {dict(Counter(r['codec'] for r in rows))}"
        )
    size = sum(p.stat().st_size for p in Path(args.out).rglob("*") if p.is_file())
    print(f"{args.out}: {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()

"""Data-side preflight checks: manifests validate, no train/val overlap, sample-rate mix."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from nano8k.checks.context import CheckResult, Context
from nano8k.errors import CheckFailed

SPLITS = ("train", "val", "test")
MAX_LISTED = 3


def _manifests(ctx: Context, split: str) -> list[str]:
    """A split's manifests; ``test`` includes the held-out manifests of BeforeAfterEvaluation callbacks."""
    value = getattr(ctx.data, f"{split}_manifests")
    paths = [] if value in (None, "") else [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
    if split == "test":
        paths += [str(args.manifest) for _, args in ctx.callbacks("BeforeAfterEvaluation") if args.manifest]
    return paths


def _manifest_keys(ctx: Context, split: str) -> str:
    """The config key(s) that name a split's manifests, for messages."""
    keys = [f"data.{split}_manifests"]
    if split == "test":
        keys += [f"{prefix}.manifest" for prefix, _ in ctx.callbacks("BeforeAfterEvaluation")]
    return ctx.key(" / ".join(keys))


def check_data_settings(ctx: Context) -> CheckResult:
    """data.* values a run can use: fbank rate, batch budgets, probabilities, durations, workers, language."""
    from nano8k.data.pipeline.datamodule import check_data_settings as refuse_unusable

    try:
        refuse_unusable(ctx.plain(ctx.data))
    except ValueError as err:
        raise CheckFailed(f"{ctx.source}: {err}") from err
    return CheckResult("data_settings", "pass", "every data.* value is usable")


def reports(ctx: Context) -> dict[str, Any]:
    """Header-only validation report per split (cached); raises CheckFailed on unreadable manifests."""
    if "reports" in ctx.facts:
        return ctx.facts["reports"]
    if "reports_error" in ctx.facts:
        raise CheckFailed(f"manifests unreadable: {ctx.facts['reports_error']} (see the manifests check)")
    try:
        ctx.facts["reports"] = _reports(ctx)
    except CheckFailed as err:
        ctx.facts["reports_error"] = str(err).split(":")[1].strip() if ":" in str(err) else str(err)
        raise
    return ctx.facts["reports"]


def _reports(ctx: Context) -> dict[str, Any]:
    from nano8k.data.manifests.validate import validate
    from nano8k.errors import DataError

    out = {}
    shards = ctx.data.train_shards
    if shards:  # a shard set's index was measured when it was written: its utterances are taken as they are
        from nano8k.data.manifests.validate import Report
        from nano8k.data.pipeline.shards import ShardIndex

        try:
            index = ShardIndex.open(shards)
        except DataError as err:
            raise CheckFailed(f"{ctx.key('data.train_shards')}: {err}") from err
        utts = list(index.utterances)
        out["train"] = Report(good=utts, seconds=float(index.utterances.durations.sum()), trusted=len(utts))
    for split in SPLITS:
        paths = _manifests(ctx, split)
        if not paths:
            continue
        missing = [p for p in paths if not Path(p).exists()]
        if missing:
            raise CheckFailed(
                f"{_manifest_keys(ctx, split)}: {missing} not found (relative paths are resolved "
                f"from the current directory {Path.cwd()}; run from the repository root or use "
                "absolute paths)"
            )
        try:
            out[split] = validate(
                paths,
                decode=False,
                min_duration=float(ctx.data.min_duration),
                max_duration=float(ctx.data.max_duration),
                multichannel=ctx.data.multichannel,
                sample=ctx.data.spot_check,
                seed=int(ctx.data.seed),
            )
        except DataError as err:
            raise CheckFailed(f"{_manifest_keys(ctx, split)}: {err}") from err
    return out


def train_hours(ctx: Context) -> float | None:
    try:
        rep = reports(ctx).get("train")
    except CheckFailed:
        return None
    return None if rep is None else rep.seconds / 3600


def encoder_limit(ctx: Context) -> tuple[int, float, str]:
    """(LFR frames, seconds) the model dir's encoder takes, and whose limit it is (the release's when unreadable)."""
    from nano8k.model.features import RELEASE_MAX_FRAMES, FrontendConfig

    front = FrontendConfig()
    try:
        frames, whose = int(ctx.network_config.audio_config.max_position_embeddings) - 1, "the model's encoder"
    except ValueError:  # the model dir is unreadable: the model_dir check says why
        frames, whose = RELEASE_MAX_FRAMES, "the release encoder (model dir unreadable)"
    return frames, frames * front.lfr_frame_seconds, whose


def _max_duration_limit(ctx: Context) -> tuple[float, int, float, str]:
    """data.max_duration (inf when null) and the encoder's limit; fails when max_duration lets longer audio through."""
    from nano8k.data.pipeline.batching import estimated_lfr_frames

    value = ctx.data.max_duration
    max_duration = float("inf") if value is None else float(value)
    frames, seconds, whose = encoder_limit(ctx)
    if math.isfinite(max_duration) and estimated_lfr_frames(max_duration) > frames:
        raise CheckFailed(
            f"{ctx.key('data.max_duration')}={max_duration:g} s is longer than {whose} takes: "
            f"{estimated_lfr_frames(max_duration)} LFR frames > {frames} ({seconds:.1f} s); longer "
            f"utterances would pass this check and then be bad samples in training. Set "
            f"data.max_duration to at most {seconds:.1f} and split longer recordings"
        )
    return max_duration, frames, seconds, whose


def check_manifests(ctx: Context) -> CheckResult:
    """Every manifest line parses, its audio exists with a readable header, duration within limits."""
    # Headers only (no decoding, so silent audio is python -m nano8k.data.validate's to find); data.max_duration must
    # fit the encoder's length limit; transcripts over MAX_TRANSCRIPT_CHARS and, with no max_duration, utterances
    # longer than the encoder takes are warnings naming key and file.
    from nano8k.data.manifests.validate import transcript_warning
    from nano8k.data.pipeline.batching import estimated_lfr_frames

    name = "manifests"
    if not _manifests(ctx, "train") and not ctx.data.train_shards:
        raise CheckFailed(
            f"{ctx.key('data.train_manifests')} is not set: give the training manifest(s) (jsonl, "
            "ChatML jsonl or a Kaldi dir)"
        )
    max_duration, frames, seconds, whose = _max_duration_limit(ctx)
    reps = reports(ctx)
    policy = ctx.data.on_bad_sample
    limit = float(ctx.data.max_bad_fraction)
    lines, status = [], "pass"
    for split, rep in reps.items():
        bad = len(rep.problems)
        trusted = f"; {rep.trusted} durations from the manifest, not opened" if rep.trusted else ""
        lines.append(f"{split} {len(rep.good)} ok / {rep.total} ({rep.seconds / 3600:.2f} h{trusted})")
        if not bad:
            continue
        first = "; ".join(b.describe() for b in rep.problems[:MAX_LISTED])
        fraction = bad / max(rep.total, 1)
        fix = (
            f"fix or drop them (python -m nano8k.data.validate {' '.join(_manifests(ctx, split))} --convert "
            "clean.jsonl), or set data.on_bad_sample skip"
        )
        if policy == "error" or fraction > limit:
            why = (
                "data.on_bad_sample is 'error'"
                if policy == "error"
                else f"{fraction:.1%} > data.max_bad_fraction {limit}"
            )
            raise CheckFailed(f"{split}: {bad} bad entries ({why}), first: {first}. {fix}")
        status = "warn"
        lines.append(f"{split}: {bad} bad entries will be skipped, first: {first}")
    for split, rep in reps.items():
        long_text = [u.bad(w).describe() for u in rep.good if (w := transcript_warning(u))]
        if long_text:
            status = "warn"
            lines.append(
                f"{split}: {len(long_text)} long transcripts (warning), first: " + "; ".join(long_text[:MAX_LISTED])
            )
        too_long = [
            u
            for u in rep.good
            if not math.isfinite(max_duration) and u.duration is not None and estimated_lfr_frames(u.duration) > frames
        ]
        if too_long:
            status = "warn"
            first = "; ".join(u.bad(f"{u.duration:.1f} s").describe() for u in too_long[:MAX_LISTED])
            lines.append(
                f"{split}: {len(too_long)} utterances are longer than {whose} takes ({frames} LFR frames, "
                f"{seconds:.1f} s) and {ctx.key('data.max_duration')} is unlimited: training will treat them "
                f"as bad samples (data.on_bad_sample), first: {first}; set data.max_duration {seconds:.1f} "
                "or split them"
            )
    if "val" not in reps:
        status = "warn"
        lines.append(
            f"no validation manifest ({ctx.key('data.val_manifests')}): no val/cer, checkpoints cannot be "
            "chosen by it; set data.val_manifests"
        )
    return CheckResult(name, status, "; ".join(lines))


def _spans(utts: list) -> dict[Path, list[tuple[object, float, float]]]:
    """Per audio file, the (channel, start, end) of each utterance (a whole file is one span from 0)."""
    spans: dict[Path, list[tuple[object, float, float]]] = {}
    for u in utts:
        start = u.offset or 0.0
        spans.setdefault(Path(u.audio).resolve(), []).append((u.channel, start, start + (u.duration or float("inf"))))
    return spans


def _shares_audio(utt, train_spans: dict) -> tuple[bool, bool]:
    """(the same audio as a train utterance: same file and channel, overlapping span; only the same recording)."""
    spans = train_spans.get(Path(utt.audio).resolve())
    if not spans:
        return False, False
    start = utt.offset or 0.0
    end = start + (utt.duration or float("inf"))
    from nano8k.data.audio import channel_list

    mine = None if utt.channel is None else set(channel_list(utt.channel))
    overlap = any(
        (c is None or mine is None or mine & set(channel_list(c))) and s < end and start < e for c, s, e in spans
    )
    return overlap, not overlap


def check_overlap(ctx: Context) -> CheckResult:
    """No utterance key or audio of val/test appears in train (for segments: no overlapping span of a channel)."""
    name = "overlap"
    reps = reports(ctx)
    if "train" not in reps:
        raise CheckFailed(f"{ctx.key('data.train_manifests')} is not set or unreadable (see manifests)")
    train = reps["train"].good
    keys = {u.key for u in train}
    train_spans = _spans(train)
    found, warns = [], []
    for split in ("val", "test"):
        if split not in reps:
            continue
        same_key = [u.key for u in reps[split].good if u.key in keys]
        shared = [(u.key, _shares_audio(u, train_spans)) for u in reps[split].good]
        same_audio = [k for k, (overlap, _) in shared if overlap]
        same_call = [k for k, (_, recording) in shared if recording]
        if same_key or same_audio:
            found.append(
                f"{split}: {len(same_key)} keys and {len(same_audio)} utterances of the same audio also in "
                f"train (e.g. {(same_key or same_audio)[:MAX_LISTED]})"
            )
        if same_call:
            warns.append(
                f"{split}: {len(same_call)} utterances are other spans or channels of recordings also in "
                f"train (e.g. {same_call[:MAX_LISTED]}); the same calls and speakers in both splits make "
                f"{split} scores optimistic: split by recording"
            )
    if found:
        raise CheckFailed(
            "; ".join(found) + f". Remove them from {ctx.key('data.val_manifests')} / "
            f"{_manifest_keys(ctx, 'test')} or from train: overlapping data makes val/test scores "
            "optimistic"
        )
    checked = [s for s in ("val", "test") if s in reps]
    message = f"no key or audio shared between train and {', '.join(checked) or '-'}"
    return CheckResult(name, "warn" if warns else "pass", "; ".join([message, *warns]))


def check_sample_rates(ctx: Context) -> CheckResult:
    """Sample-rate mix per split vs the telephone simulation settings."""
    name = "sample_rates"
    reps = reports(ctx)
    lines, warns = [], []
    telephone = ctx.data.telephone
    max_rate = ctx.data.telephone_max_input_rate
    for split, rep in reps.items():
        rates = dict(sorted(rep.rates.items()))
        lines.append(f"{split} " + (", ".join(f"{r} Hz x{n}" for r, n in rates.items()) or "-"))
        low = [r for r in rates if r < 8000]
        if low:
            raise CheckFailed(
                f"{split}: audio at {low} Hz is below the 8 kHz telephone band; resample it to 8000 Hz "
                f"or drop it from {ctx.key(f'data.{split}_manifests')}"
            )
        wide = sum(n for r, n in rates.items() if r > 8000)
        if (
            split == "train"
            and telephone is not None
            and max_rate is not None
            and rates
            and ctx.data.telephone_prob > 0
            and not any(r > max_rate for r in rates)
        ):
            warns.append(
                f"data.telephone is set but no train audio is above data.telephone_max_input_rate "
                f"({max_rate} Hz), so the channel never runs: set telephone_max_input_rate null to send "
                "8 kHz audio through the profiles too"
            )
        if not wide:
            continue
        if split == "train" and telephone is None:
            warns.append(
                f"{wide} wideband train files will train as wideband (data.telephone is null): set "
                "data.telephone to simulate the channel, or pre-simulate with python -m nano8k.simulate"
            )
        elif split == "train" and max_rate is not None:
            prob = ctx.data.telephone_prob
            lines.append(f"wideband train audio goes through the telephone channel with p={prob}")
        elif split != "train":
            warns.append(
                f"{split} has {wide} wideband files; the channel is simulated on train only, so {split} "
                "scores do not reflect telephone audio (pre-simulate with python -m nano8k.simulate)"
            )
    return CheckResult(name, "warn" if warns else "pass", "; ".join(lines + warns))


def check_channel(ctx: Context) -> CheckResult:
    """data.telephone and data.speed_perturb can be built here: known profiles, effects and codecs this machine
    runs, noise / RIR sources that exist; lists each profile's effects."""
    from nano8k.data.channel.telephone import TelephoneChannel
    from nano8k.data.pipeline.speed import SpeedPerturb
    from nano8k.errors import DataError

    lines = []
    for name, cls in (("telephone", TelephoneChannel), ("speed_perturb", SpeedPerturb)):
        key, value = f"data.{name}", getattr(ctx.data, name)
        if value is None:
            lines.append(f"{key} null")
            continue
        try:
            built = cls.from_config(ctx.plain(value))
        except (TypeError, ValueError, DataError) as err:
            raise CheckFailed(f"{ctx.key(key)}: {err}") from err
        described = built.describe()
        lines += described if isinstance(built, TelephoneChannel) else [f"speed perturbation: {described}"]
    return CheckResult("channel", "pass", "; ".join(lines))

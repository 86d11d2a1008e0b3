"""Lhotse manifests in and out (CutSet, or SupervisionSet + RecordingSet), through lhotse's own API (optional extra)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

from nano8k.data.audio import MultichannelPolicy, probe_audio
from nano8k.data.badsamples import BadSample, DataError
from nano8k.data.textfile import read_lines
from nano8k.data.utterance import Channel, ManifestContents, Utterance

INSTALL = "pip install -e '.[lhotse]'  (or pip install lhotse)"


def kind(obj: dict[str, Any]) -> str | None:
    """``cuts``, ``supervisions`` or ``recordings`` for one decoded line of a Lhotse manifest, else None."""
    if obj.get("type") in ("MonoCut", "MultiCut", "MixedCut", "PaddingCut") or {"recording", "supervisions"} <= obj.keys():
        return "cuts"
    if {"id", "recording_id", "start", "duration"} <= obj.keys():
        return "supervisions"
    if {"id", "sources", "sampling_rate"} <= obj.keys():
        return "recordings"
    return None


def _manifest_kind(path: Path) -> str:
    for _, text, _ in read_lines(path):
        if text and text.strip():
            try:
                found = kind(json.loads(text))
            except (json.JSONDecodeError, AttributeError):
                continue
            if found:
                return found
    raise DataError(f"{path}: not a Lhotse manifest (no cut, supervision or recording on its lines)")


def _lhotse() -> Any:
    try:
        import lhotse
    except ImportError as exc:
        raise DataError(f"reading or writing Lhotse manifests needs the lhotse package: {INSTALL}") from exc
    return lhotse


def recordings_beside(supervisions: Path) -> Path:
    """The RecordingSet of a SupervisionSet by Lhotse recipes' naming: ``*_supervisions_*`` -> ``*_recordings_*``."""
    if "supervisions" not in supervisions.name:
        raise DataError(f"{supervisions}: a SupervisionSet must be named like Lhotse recipes' "
                        "'<corpus>_supervisions_<part>.jsonl.gz' so its '<corpus>_recordings_<part>.jsonl.gz' is "
                        "found beside it (or give a CutSet)")
    path = supervisions.with_name(supervisions.name.replace("supervisions", "recordings"))
    if not path.is_file():
        raise DataError(f"{supervisions}: its RecordingSet {path} does not exist")
    return path


def _file_and_channel(recording: Any, channel: int | list[int]) -> tuple[Path | None, Channel, str | None]:
    """The source file holding ``channel`` of ``recording`` and the channel's index in that file."""
    if recording.transforms:
        return None, None, (f"recording {recording.id} has transforms (speed, resampling, …) that nano8k does not "
                            "apply; give the untransformed recording")
    wanted = [channel] if isinstance(channel, int) else list(channel)
    sources = [s for s in recording.sources if set(s.channels) & set(wanted)]
    if len(sources) != 1 or not set(wanted) <= set(sources[0].channels):
        return None, None, (f"channel {channel} of recording {recording.id} is "
                            f"{'in no source' if not sources else 'spread over several source files'}")
    source = sources[0]
    if source.type != "file":
        return None, None, f"recording {recording.id}: audio source type {source.type!r} is not supported (only files)"
    path = Path(source.source).expanduser()
    path = path if path.is_absolute() else (Path.cwd() / path).resolve()  # lhotse opens relative paths as given
    local = [source.channels.index(c) for c in wanted]
    if len(source.channels) == 1:
        return path, None, None
    return path, local[0] if len(local) == 1 else tuple(local), None


def _utterance(sup: Any, recording: Any, offset: float, manifest: Path, line: int) -> tuple[Utterance | None, str | None]:
    if not sup.text or not str(sup.text).strip():
        return None, "supervision has no text"
    path, channel, problem = _file_and_channel(recording, sup.channel)
    if problem:
        return None, problem
    duration = float(sup.duration)
    whole = abs(offset) < 1e-9 and abs(duration - recording.duration) <= 1.0 / recording.sampling_rate
    return Utterance(sup.id, path, str(sup.text), float(recording.duration) if whole else duration, sup.language,
                     None, line, manifest, offset=None if whole else offset, channel=channel), None


def read_lhotse(path: Path) -> ManifestContents:
    """Utterances of a Lhotse CutSet (one per supervision) or of a SupervisionSet with its RecordingSet beside it.

    Spans are recording time (a cut's start plus its supervision's start); a supervision's channel becomes the
    channel in its source file. Relative source paths resolve from the current directory, as lhotse opens them.
    ``line`` is the entry's number in the manifest (its line in a jsonl file). Mixed/padding cuts, non-file sources
    and recordings with transforms are bad entries, named.
    """
    lhotse = _lhotse()
    found = _manifest_kind(path)
    if found == "recordings":
        raise DataError(f"{path} is a Lhotse RecordingSet, which has no transcripts: give its SupervisionSet "
                        "(the RecordingSet is found beside it) or a CutSet")
    contents = ManifestContents(path, "lhotse")
    line = 0
    try:
        if found == "supervisions":
            recordings = lhotse.load_manifest(recordings_beside(path))
            for line, sup in enumerate(lhotse.load_manifest_lazy(path), start=1):
                if sup.recording_id not in recordings:
                    contents.bad.append(BadSample(f"recording {sup.recording_id!r} is not in the RecordingSet",
                                                  str(path), line, sup.id))
                    continue
                _add(contents, sup, recordings[sup.recording_id], float(sup.start), path, line)
        else:
            for line, cut in enumerate(lhotse.load_manifest_lazy(path), start=1):
                if type(cut).__name__ not in ("MonoCut", "MultiCut") or cut.recording is None:
                    contents.bad.append(BadSample(f"{type(cut).__name__} without a recording is not supported "
                                                  "(give MonoCut/MultiCut cuts of recordings)", str(path), line, cut.id))
                    continue
                if not cut.supervisions:
                    contents.bad.append(BadSample("cut has no supervision (no transcript)", str(path), line, cut.id))
                for sup in cut.supervisions:
                    _add(contents, sup, cut.recording, float(cut.start) + float(sup.start), path, line)
    except DataError:
        raise
    except Exception as exc:  # lhotse raises many kinds for a malformed entry; name where it stopped
        raise DataError(f"{path}: entry {line + 1}: lhotse cannot read it: {type(exc).__name__}: {exc}") from exc
    return contents


def _add(contents: ManifestContents, sup: Any, recording: Any, offset: float, path: Path, line: int) -> None:
    utt, problem = _utterance(sup, recording, round(offset, 6), path, line)
    if problem:
        contents.bad.append(BadSample(problem, str(path), line, sup.id))
    else:
        contents.utterances.append(utt)


def _recording_id(path: Path, taken: dict[str, Path]) -> str:
    rid = path.stem
    if taken.get(rid, path) != path:
        rid = f"{path.stem}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    taken[rid] = path
    return rid


def write_lhotse(utts: Iterable[Utterance], out_path: str | Path, multichannel: MultichannelPolicy = "error") -> int:
    """Write ``utts`` as a Lhotse CutSet (one MonoCut per utterance; cut id = supervision id = key).

    Source paths are absolute. An utterance without a channel on a multi-channel file gets channel 0 under
    ``multichannel='first'`` and all channels (a MultiCut) under ``mix``.
    """
    lhotse = _lhotse()
    from lhotse.audio import AudioSource
    from lhotse.cut import MultiCut

    recordings: dict[Path, Any] = {}
    taken: dict[str, Path] = {}
    cuts = []
    for utt in utts:
        if utt.audio not in recordings:
            info = probe_audio(utt.audio)
            recordings[utt.audio] = lhotse.Recording(
                id=_recording_id(utt.audio, taken), sampling_rate=info.sample_rate, num_samples=info.frames,
                duration=info.frames / info.sample_rate,
                sources=[AudioSource(type="file", channels=list(range(info.channels)), source=str(utt.audio))])
        rec = recordings[utt.audio]
        count = len(rec.sources[0].channels)
        channel: int | list[int] = (0 if count == 1 else utt.channel if isinstance(utt.channel, int)
                                    else list(utt.channel) if utt.channel is not None
                                    else 0 if multichannel == "first" else list(range(count)))
        if channel == list(range(count)) and multichannel == "error" and utt.channel is None:
            raise DataError(f"{utt.audio} has {count} channels and utterance {utt.key} names none (multichannel=error)")
        start = utt.offset or 0.0
        duration = utt.duration if utt.duration is not None else rec.duration - start
        sup = lhotse.SupervisionSegment(id=utt.key, recording_id=rec.id, start=0.0, duration=duration,
                                        channel=channel, text=utt.target, language=utt.lang)
        kind_ = MultiCut if isinstance(channel, list) else lhotse.MonoCut
        cuts.append(kind_(id=utt.key, start=start, duration=duration, channel=channel, recording=rec,
                          supervisions=[sup]))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    lhotse.CutSet.from_cuts(cuts).to_file(out_path)
    return len(cuts)

"""Lhotse manifests in and out (CutSet, or SupervisionSet + RecordingSet), through lhotse's own API (optional extra)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nano8k.data.audio import channel_list, probe_audio
from nano8k.data.badsamples import BadSample
from nano8k.data.manifests.textfile import first_json_object, json_line, read_lines
from nano8k.data.manifests.utterance import Channel, ManifestContents, Utterance, parse_key
from nano8k.errors import DataError

INSTALL = "pip install -e '.[lhotse]'  (or pip install lhotse)"


def kind(obj: dict[str, Any]) -> str | None:
    """``cuts``, ``supervisions`` or ``recordings`` for one decoded line of a Lhotse manifest, else None."""
    if (
        obj.get("type") in ("MonoCut", "MultiCut", "MixedCut", "PaddingCut")
        or {"recording", "supervisions"} <= obj.keys()
    ):
        return "cuts"
    if {"id", "recording_id", "start", "duration"} <= obj.keys():
        return "supervisions"
    if {"id", "sources", "sampling_rate"} <= obj.keys():
        return "recordings"
    return None


def _manifest_kind(path: Path) -> str:
    found = first_json_object(path, lambda obj: kind(obj) if isinstance(obj, dict) else None)
    if found is None:
        raise DataError(f"{path}: not a Lhotse manifest (no cut, supervision or recording on its lines)")
    return found


def _entries(lhotse: Any, path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """``(line, lhotse object, None)`` per entry, or ``(line, None, reason)`` for a line that cannot be one."""
    from lhotse.serialization import deserialize_item

    for lineno, text, error in read_lines(path):
        if error is None and not text.strip():
            continue
        obj = None
        if error is None:
            obj, error = json_line(text)
        if error is None and not isinstance(obj, dict):
            error = "line is not a JSON object"
        if error is None:
            try:
                yield lineno, deserialize_item(obj), None
                continue
            except Exception as exc:  # lhotse raises many kinds for a malformed entry
                error = f"lhotse cannot read this entry: {type(exc).__name__}: {exc}"
        yield lineno, None, error


def _lhotse() -> Any:
    try:
        import lhotse
    except ImportError as exc:
        raise DataError(f"reading or writing Lhotse manifests needs the lhotse package: {INSTALL}") from exc
    return lhotse


def recordings_beside(supervisions: Path) -> Path:
    """The RecordingSet of a SupervisionSet by Lhotse recipes' naming: ``*_supervisions_*`` -> ``*_recordings_*``."""
    if "supervisions" not in supervisions.name:
        raise DataError(
            f"{supervisions}: a SupervisionSet must be named like Lhotse recipes' "
            "'<corpus>_supervisions_<part>.jsonl.gz' so its '<corpus>_recordings_<part>.jsonl.gz' is "
            "found beside it (or give a CutSet)"
        )
    path = supervisions.with_name(supervisions.name.replace("supervisions", "recordings"))
    if not path.is_file():
        raise DataError(f"{supervisions}: its RecordingSet {path} does not exist")
    return path


def _file_and_channel(recording: Any, channel: int | list[int]) -> tuple[Path | None, Channel, str | None]:
    """The source file holding ``channel`` of ``recording`` and the channel's index in that file."""
    if recording.transforms:
        return (
            None,
            None,
            (
                f"recording {recording.id} has transforms (speed, resampling, …) that nano8k does not "
                "apply; give the untransformed recording"
            ),
        )
    wanted = channel_list(channel)
    sources = [s for s in recording.sources if set(s.channels) & set(wanted)]
    if len(sources) != 1 or not set(wanted) <= set(sources[0].channels):
        return (
            None,
            None,
            (
                f"channel {channel} of recording {recording.id} is "
                f"{'in no source' if not sources else 'spread over several source files'}"
            ),
        )
    source = sources[0]
    if source.type != "file":
        return None, None, f"recording {recording.id}: audio source type {source.type!r} is not supported (only files)"
    path = Path(source.source).expanduser()
    path = path if path.is_absolute() else (Path.cwd() / path).resolve()  # lhotse opens relative paths as given
    local = [source.channels.index(c) for c in wanted]
    if len(source.channels) == 1:
        return path, None, None
    return path, local[0] if len(local) == 1 else tuple(local), None


def _utterance(
    sup: Any, recording: Any, offset: float, manifest: Path, line: int, transcripts: bool = True
) -> tuple[Utterance | None, str | None]:
    if transcripts and (not sup.text or not str(sup.text).strip()):
        return None, "supervision has no text"
    try:
        parse_key(sup.id, "supervision 'id'")
    except ValueError as exc:
        return None, str(exc)
    duration = float(sup.duration)
    if not (math.isfinite(offset) and math.isfinite(duration)) or offset < 0 or duration <= 0:
        return None, f"bad supervision span: start {offset} s, duration {duration} s"
    path, channel, problem = _file_and_channel(recording, sup.channel)
    if problem:
        return None, problem
    whole = abs(offset) < 1e-9 and abs(duration - recording.duration) <= 1.0 / recording.sampling_rate
    return Utterance(
        sup.id,
        path,
        str(sup.text or ""),
        float(recording.duration) if whole else duration,
        _language(sup.language),
        None,
        line,
        manifest,
        offset=None if whole else offset,
        channel=channel,
    ), None


LANGUAGE_CODES = {"english": "en", "chinese": "zh", "mandarin": "zh", "japanese": "ja"}  # Lhotse recipes' names


def _language(name: str | None) -> str | None:
    """A supervision's language as nano8k's code (``English`` -> ``en``); other values are kept as they are."""
    return None if name is None else LANGUAGE_CODES.get(str(name).lower(), name)


class _Reader:
    """Collects utterances; a supervision repeated with the same span (lhotse's overlapping trims) counts once."""

    def __init__(self, path: Path, transcripts: bool = True) -> None:
        self.path, self.transcripts = path, transcripts
        self.contents = ManifestContents(path, "lhotse")
        self.seen: set[tuple] = set()

    def bad(self, reason: str, line: int, key: str | None = None, path: Path | None = None) -> None:
        self.contents.bad.append(BadSample(reason, str(path or self.path), line, key))

    def add(self, sup: Any, recording: Any, offset: float, line: int) -> None:
        offset = round(offset, 6)
        channel = tuple(channel_list(sup.channel))
        ident = (sup.id, recording.id, offset, round(float(sup.duration), 6), channel)
        if ident in self.seen:
            self.contents.ignored.append(
                BadSample("the same supervision again (overlapping cuts)", str(self.path), line, sup.id)
            )
            return
        self.seen.add(ident)
        utt, problem = _utterance(sup, recording, offset, self.path, line, self.transcripts)
        if problem:
            self.bad(problem, line, sup.id)
        else:
            self.contents.utterances.append(utt)


def read_lhotse(path: Path, transcripts: bool = True) -> ManifestContents:
    """Utterances of a Lhotse CutSet (one per supervision) or of a SupervisionSet with its RecordingSet beside it.

    Spans are recording time (a cut's start plus its supervision's start); a supervision's channel becomes the
    channel in its source file. A supervision that several cuts repeat with the same span (``trim_to_supervisions``
    with overlaps, windows) is one utterance; cuts without supervisions are not utterances. Both are listed in
    ``ignored``. Relative source paths resolve from the current directory, as lhotse opens them. Each line is read
    on its own: a line that is not an entry, a mixed/padding cut, a non-file source or a recording with transforms
    is a bad entry naming its file and line. Without ``transcripts`` (decoding only) a supervision may lack text.
    """
    lhotse = _lhotse()
    found = _manifest_kind(path)
    if found == "recordings":
        raise DataError(
            f"{path} is a Lhotse RecordingSet, which has no transcripts: give its SupervisionSet "
            "(the RecordingSet is found beside it) or a CutSet"
        )
    reader = _Reader(path, transcripts)
    if found == "supervisions":
        recordings_path = recordings_beside(path)
        recordings: dict[str, Any] = {}
        for line, rec, error in _entries(lhotse, recordings_path):
            if error or not isinstance(rec, lhotse.Recording):
                reader.bad(error or "not a Recording", line, path=recordings_path)
            else:
                recordings[rec.id] = rec
        for line, sup, error in _entries(lhotse, path):
            if error or not isinstance(sup, lhotse.SupervisionSegment):
                reader.bad(error or f"not a SupervisionSegment ({type(sup).__name__})", line)
            elif sup.recording_id not in recordings:
                reader.bad(f"recording {sup.recording_id!r} is not in {recordings_path.name}", line, sup.id)
            else:
                reader.add(sup, recordings[sup.recording_id], float(sup.start), line)
        return reader.contents
    for line, cut, error in _entries(lhotse, path):
        if error:
            reader.bad(error, line)
        elif type(cut).__name__ not in ("MonoCut", "MultiCut") or getattr(cut, "recording", None) is None:
            reader.bad(
                f"{type(cut).__name__} without a recording is not supported (give MonoCut/MultiCut cuts of recordings)",
                line,
                getattr(cut, "id", None),
            )
        elif not cut.supervisions:
            reader.contents.ignored.append(
                BadSample("cut has no supervision (nothing to transcribe)", str(path), line, cut.id)
            )
        else:
            for sup in cut.supervisions:
                reader.add(sup, cut.recording, float(cut.start) + float(sup.start), line)
    return reader.contents


def _recording_id(path: Path, taken: dict[str, Path]) -> str:
    rid = path.stem
    if taken.get(rid, path) != path:
        rid = f"{path.stem}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    taken[rid] = path
    return rid


def write_lhotse(utts: Iterable[Utterance], out_path: str | Path) -> int:
    """Write ``utts`` as a Lhotse CutSet: one cut per utterance (cut id = supervision id = key), a MonoCut, or a
    MultiCut for a list of channels. Source paths are absolute. An utterance on a multi-channel file must name its
    channel(s) (``validate --multichannel first|mix`` names them); a ``DataError`` says which one does not.
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
                id=_recording_id(utt.audio, taken),
                sampling_rate=info.sample_rate,
                num_samples=info.frames,
                duration=info.frames / info.sample_rate,
                sources=[AudioSource(type="file", channels=list(range(info.channels)), source=str(utt.audio))],
            )
        rec = recordings[utt.audio]
        count = len(rec.sources[0].channels)
        if utt.channel is None and count > 1:
            raise DataError(
                f"{utt.manifest}:{utt.line}: {utt.audio} has {count} channels and utterance {utt.key} "
                "names none; choose them with --multichannel first|mix"
            )
        wanted = [0] if utt.channel is None else channel_list(utt.channel)
        channel: int | list[int] = wanted[0] if len(wanted) == 1 else wanted
        start = utt.offset or 0.0
        duration = utt.duration if utt.duration is not None else rec.duration - start
        sup = lhotse.SupervisionSegment(
            id=utt.key,
            recording_id=rec.id,
            start=0.0,
            duration=duration,
            channel=channel,
            text=utt.target,
            language=utt.lang,
        )
        kind_ = MultiCut if isinstance(channel, list) else lhotse.MonoCut
        cuts.append(
            kind_(id=utt.key, start=start, duration=duration, channel=channel, recording=rec, supervisions=[sup])
        )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    lhotse.CutSet.from_cuts(cuts).to_file(out_path)
    return len(cuts)

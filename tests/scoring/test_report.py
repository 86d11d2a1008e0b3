"""Per-group reports: groups add up to the total, per-utterance counts, substitutions, fields of every manifest format,
and the charts are real PNGs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nano8k.data.manifests.fields import MISSING, entry_fields
from nano8k.data.manifests.io import read_manifest
from nano8k.errors import DataError
from nano8k.scoring.metrics import error_counts
from nano8k.scoring.plots import plot_groups, plot_sweep
from nano8k.scoring.report import Scored, build_report, markdown

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PNG = b"\x89PNG\r\n\x1a\n"

ITEMS = [
    Scored("a", "分机八八零", "分机八八", {"lang": "zh", "network": "mobile"}),
    Scored("b", "Extension eight eight zero please.", "extension 8 8 0 please", {"lang": "en", "network": "voip"}),
    Scored("c", "查一下账单", "查一下帐单", {"lang": "zh", "network": "mobile"}),
    Scored("d", "我的账户余额", "我的帐户余额", {"lang": "zh", "network": "landline"}),
    Scored("e", "the code is one one three", "the code is one one tree", {"lang": "en", "network": "landline"}),
    Scored("f", "。", "嗯", {"lang": "zh", "network": "voip"}),
]


@pytest.mark.parametrize("normalizer", ["basic", "funasr"])
def test_groups_sum_to_the_total_and_the_total_is_the_pooled_rate(normalizer):
    report = build_report(ITEMS, ["lang", "network"], normalizer)
    overall = report["overall"]
    for unit, rate in (("char", "cer"), ("word", "wer"), ("mixed", "mer")):
        pooled = error_counts([i.ref for i in ITEMS], [i.hyp for i in ITEMS], unit, normalizer=normalizer)
        counts = overall[f"{rate}_counts"]
        assert (
            counts["edits"],
            counts["ref_units"],
            counts["substitutions"],
            counts["deletions"],
            counts["insertions"],
        ) == (pooled.edits, pooled.ref_units, pooled.substitutions, pooled.deletions, pooled.insertions)
        assert overall[rate] == pytest.approx(pooled.rate)
        for field in ("lang", "network"):
            groups = report["groups"][field].values()
            for name in ("edits", "ref_units", "substitutions", "deletions", "insertions"):
                assert sum(g[f"{rate}_counts"][name] for g in groups) == counts[name], (field, name)
    assert (overall["utterances"], overall["empty_refs"]) == (5, 1)
    assert sorted(report["groups"]["network"]) == ["landline", "mobile", "voip"]
    assert report["groups"]["network"]["voip"]["empty_refs"] == 1
    assert len(report["utterances"]) == len(ITEMS) and not report["utterances"][-1]["scored"]


def test_per_utterance_rows_substitutions_worst_and_markdown():
    report = build_report(ITEMS, ["network"], "funasr", num_worst=2)
    rows = {r["key"]: r for r in report["utterances"]}
    assert rows["a"]["ref_normalized"] == "分 机 8 8 0" and rows["a"]["hyp_normalized"] == "分 机 8 8"
    assert (rows["a"]["deletions"], rows["a"]["substitutions"], rows["a"]["ref_units"]) == (1, 0, 5)
    assert rows["b"]["mer"] == 0.0 and rows["a"]["fields"] == {"lang": "zh", "network": "mobile"}
    assert report["substitutions"]["overall"][0] == ["账", "帐", 2]  # the most frequent pair first
    assert report["substitutions"]["network"]["landline"][0][:2] in (["账", "帐"], ["three", "tree"])
    assert [w["key"] for w in report["worst"]] == ["a", "c"]  # MER 0.2 and 1 edit each: a tie goes by key
    text = markdown(report, "Test")
    assert "## By network" in text and "| 账 | 帐 | 2 |" in text and "1 utterance(s) with an empty" in text


def test_charts_are_written(tmp_path):
    report = build_report(ITEMS, ["lang", "network"], "funasr")
    path = plot_groups(report, tmp_path / "groups.png")
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 10_000
    no_groups = plot_groups(build_report(ITEMS, [], "basic"), tmp_path / "overall.png")
    assert no_groups.read_bytes()[:8] == PNG
    points = [
        {"params": {"model.lr": lr}, "best": best, "curve": [(2, best + 0.1), (4, best)]}
        for lr, best in ((1e-5, 0.4), (1e-4, 0.3), (1e-3, 0.5))
    ]
    sweep = plot_sweep(points, "model.lr", "val/cer", tmp_path / "sweep.png")
    assert sweep.read_bytes()[:8] == PNG and sweep.stat().st_size > 10_000


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_fields_of_jsonl_entries_and_a_misspelt_field(tmp_path):
    wav = str(next((FIXTURES / "speech").glob("en_real_01.*.wav")))
    manifest = _jsonl(
        tmp_path / "m.jsonl",
        [
            {"key": "u1", "source": wav, "target": "a", "speaker": "agent7", "channel": 0, "domain": "billing"},
            {"key": "u2", "source": wav, "target": "b", "speaker": "cust3", "channel": 1},
            {"key": "u3", "source": wav, "target": "c", "messages": None},  # a bad line: not an utterance
            {
                "key": "u4",
                "messages": [
                    {"role": "user", "content": f"<|startofspeech|>!{wav}<|endofspeech|>"},
                    {"role": "assistant", "content": "d"},
                ],
                "domain": "sales",
            },
        ],
    )
    utts = list(read_manifest(manifest).utterances)
    assert [u.key for u in utts] == ["u1", "u2", "u4"]
    assert entry_fields(utts, ["speaker", "channel", "domain"]) == [
        {"speaker": "agent7", "channel": "0", "domain": "billing"},
        {"speaker": "cust3", "channel": "1", "domain": MISSING},
        {"speaker": MISSING, "channel": MISSING, "domain": "sales"},
    ]
    with pytest.raises(
        DataError,
        match=r"no entry has a field 'domian': the first entry of .*m.jsonl has channel, "
        r"domain, key, ",
    ):
        entry_fields(utts, ["domian"])
    other = _jsonl(tmp_path / "n.jsonl", [{"key": "v1", "source": wav, "target": "e", "domain": None, "speaker": 7}])
    both = utts + list(read_manifest(other).utterances)  # two manifests at once; null is no value
    assert entry_fields(both, ["domain", "speaker"])[2:] == [
        {"domain": "sales", "speaker": MISSING},
        {"domain": MISSING, "speaker": "7"},
    ]


def test_fields_of_a_kaldi_folder(tmp_path):
    folder = tmp_path / "kaldi"
    shutil.copytree(FIXTURES / "data" / "kaldi", folder)
    for name in ("wav.scp",):  # keep the audio paths valid from the copy
        lines = (folder / name).read_text().splitlines()
        (folder / name).write_text(
            "".join(
                f"{k} {(FIXTURES / 'data' / 'kaldi' / p).resolve()}\n"
                for k, p in (line.split(maxsplit=1) for line in lines)
            )
        )
    keys = [line.split()[0] for line in (folder / "text").read_text().splitlines()]
    (folder / "utt2spk").write_text("".join(f"{k} spk{i % 2}\n" for i, k in enumerate(keys)))
    (folder / "utt2domain").write_text(f"{keys[0]} billing\n")
    utts = list(read_manifest(folder).utterances)
    fields = entry_fields(utts, ["speaker", "domain"])
    by_key = {u.key: f for u, f in zip(utts, fields)}
    assert by_key[keys[0]] == {"speaker": "spk0", "domain": "billing"}
    assert by_key[keys[1]] == {"speaker": "spk1", "domain": MISSING}
    with pytest.raises(
        DataError,
        match=r"no entry has a field 'network': .*kaldi has utt2domain, utt2spk \(a field "
        r"is read from utt2<field>",
    ):
        entry_fields(utts, ["network"])
    (folder / "utt2domain").write_text(f"{keys[0]} billing\n{keys[0]} sales\n")
    with pytest.raises(DataError, match=r"duplicate key .* in utt2domain \(lines .*utt2domain:1, .*utt2domain:2\)"):
        entry_fields(utts, ["domain"])


def test_fields_of_lhotse_supervisions_and_cuts(tmp_path):
    pytest.importorskip("lhotse", reason="the lhotse extra is part of .[dev]; CI installs it")
    from nano8k.data.manifests.lhotse_io import write_lhotse

    wav = next((FIXTURES / "speech").glob("en_real_01.*.wav"))
    src = _jsonl(tmp_path / "src.jsonl", [{"key": "s1", "source": str(wav), "target": "hello", "lang": "en"}])
    cuts = tmp_path / "cuts.jsonl"
    write_lhotse(read_manifest(src).utterances, cuts)
    rows = [json.loads(line) for line in cuts.read_text().splitlines()]
    assert rows and "supervisions" in rows[0]
    rows[0]["custom"] = {"campaign": "spring"}
    rows[0]["supervisions"][0]["speaker"] = "agent7"
    rows[0]["supervisions"][0]["custom"] = {"domain": "billing"}
    _jsonl(cuts, rows)
    utts = list(read_manifest(cuts).utterances)
    assert entry_fields(utts, ["speaker", "domain", "campaign"]) == [
        {"speaker": "agent7", "domain": "billing", "campaign": "spring"}
    ]

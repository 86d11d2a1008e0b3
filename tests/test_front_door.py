"""The Python front door: ``nano8k.load_model(...)`` transcribes paths, arrays, segments and channels with
per-input prompts, and scores a manifest; results are plain dataclasses and dicts, refusals are UserError kinds."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import nano8k
from nano8k.commands import transcribe
from nano8k.errors import ConfigError, UserError
from nano8k.inference import Speech, Transcription
from tests.conftest import FIXTURES, TINY_DIR

TINY_WAVS = sorted(str(p) for p in TINY_DIR.glob("*.wav"))
DIGITS = FIXTURES / "digits" / "clean.jsonl"


@pytest.fixture(scope="module")
def tiny():
    return nano8k.load_model(TINY_DIR, device="cpu")


def test_import_nano8k_stays_cheap():
    code = "import sys, nano8k; print('torch' in sys.modules, callable(nano8k.load_model))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]


def test_paths_decode_as_the_command_does(tiny, capsys):
    results = tiny.transcribe(TINY_WAVS, max_new_tokens=6)
    assert all(isinstance(r, Transcription) and r.error is None for r in results)
    assert transcribe.main([*TINY_WAVS, "--model_dir", str(TINY_DIR), "--max_new_tokens", "6", "--device", "cpu"]) == 0
    printed = dict(line.split("\t", 1) for line in capsys.readouterr().out.splitlines())
    assert {r.key: r.text for r in results} == printed
    assert tiny.transcribe(TINY_WAVS[0], max_new_tokens=6) == results[:1]  # one input, not a list of them


def test_arrays_with_their_sample_rate_equal_their_files(tiny):
    audio, rate = sf.read(TINY_WAVS[0], dtype="float32")
    from_file = tiny.transcribe([TINY_WAVS[0]], max_new_tokens=6)[0]
    import torch

    as_numpy, as_torch = tiny.transcribe([audio, torch.from_numpy(audio)], sample_rate=rate, max_new_tokens=6)
    assert as_numpy.text == as_torch.text == from_file.text and as_numpy.key == "input-0"
    with pytest.raises(ConfigError, match="input 0: an array needs its sample_rate"):
        tiny.transcribe([audio])


def test_a_segment_of_one_channel_equals_that_channel_cut_alone(tiny, tmp_path):
    left, rate = sf.read(TINY_WAVS[0], dtype="float32")
    right, _ = sf.read(TINY_WAVS[1], dtype="float32")
    n = min(len(left), len(right))
    call = tmp_path / "call.wav"
    sf.write(str(call), np.stack([left[:n], right[:n]], axis=1), rate, subtype="FLOAT")
    offset, duration = 0.1, round((n / rate) - 0.2, 3)
    cut = right[round(offset * rate) : round(offset * rate) + round(duration * rate)]
    alone = tiny.transcribe([cut], sample_rate=rate, max_new_tokens=6)[0]
    in_file = Speech(str(call), key="cust", offset=offset, duration=duration, channel=1)
    in_memory = Speech(np.stack([left[:n], right[:n]]), sample_rate=rate, offset=offset, duration=duration, channel=1)
    results = tiny.transcribe([in_file, in_memory], max_new_tokens=6)
    assert [r.text for r in results] == [alone.text, alone.text] and results[0].key == "cust"
    from nano8k.inference.api import _request
    from nano8k.inference.featurize import Featurizer

    featurize = Featurizer(tiny.network.frontend, tiny.network.max_frames)
    wanted = featurize(_request(cut, 0, rate))
    assert all(featurize(_request(s, 0, None)).equal(wanted) for s in (in_file, in_memory))  # bit-identical input
    other_side = Speech(str(call), offset=offset, duration=duration, channel=0)
    assert not featurize(_request(other_side, 0, None)).equal(wanted)
    mixed = tiny.transcribe([str(call)], max_new_tokens=6)[0]  # no channel named: the default policy refuses
    assert mixed.text == "" and "2 channels" in mixed.error


def test_hotwords_and_language_per_input(tiny):
    first, second = TINY_WAVS[:2]
    per_input = tiny.transcribe(
        [Speech(first, hotwords=["alpha", "beta"]), Speech(second, language="en")], max_new_tokens=6
    )
    assert per_input[0] == tiny.transcribe([first], hotwords=["alpha", "beta"], max_new_tokens=6)[0]
    assert per_input[1] == tiny.transcribe([second], language="en", max_new_tokens=6)[0]
    assert [r.text for r in per_input] != [r.text for r in tiny.transcribe([first, second], max_new_tokens=6)]
    # the prompts did change: the same inputs without them are fed other source tokens
    from nano8k.data.manifests.io import Utterance
    from nano8k.inference.decode import DecodeOptions, _Prompts
    from nano8k.inference.featurize import Request

    prompts = _Prompts(tiny.network, tiny.feeding, DecodeOptions())
    plain = Request(Utterance("k", first, ""))
    assert prompts.encode(plain, 3).input_ids != prompts.encode(Request(plain.utt, hotwords=("alpha",)), 3).input_ids
    assert prompts.encode(plain, 3).input_ids != prompts.encode(Request(plain.utt, language="en"), 3).input_ids


def test_settings_are_feeding_fields_and_refusals_are_user_errors(tiny):
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['fs'\]"):
        tiny.transcribe(TINY_WAVS[:1], fs=8000)
    with pytest.raises(UserError, match="language must be null"):
        tiny.transcribe(TINY_WAVS[:1], language="fr")
    with pytest.raises(UserError, match="not a torch device"):
        nano8k.load_model(TINY_DIR, device="gpu9")


def test_score_a_manifest():
    mini = nano8k.load_model("mini", device="cpu")
    scores = mini.score(DIGITS, max_new_tokens=12)
    keys = [json.loads(line)["key"] for line in DIGITS.read_text().splitlines()]
    assert scores["utterances"] == len(keys) and list(scores["hypotheses"]) == keys
    assert scores["cer"] <= 0.35 and set(scores["by_language"]) >= {"en"}
    json.dumps(scores)  # plain data

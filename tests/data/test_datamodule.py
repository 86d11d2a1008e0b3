"""TelephoneDataModule: batch contents, train-only augmentation, bad-input policy, resume state, demo corpus."""

from __future__ import annotations

import functools
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

from nano8k.data.pipeline.datamodule import TelephoneDataModule
from nano8k.data.pipeline.specaugment import SpecAugment
from nano8k.errors import DataError
from nano8k.model.batch import SpeechBatch
from nano8k.model.features import FrontendConfig, extract_features
from nano8k.model.prompt import IGNORE_INDEX, SPEECH_PLACEHOLDER_ID

from .conftest import DEMO, TOKENIZER_DIR, fixture_rows, tone, write_jsonl


@functools.lru_cache(maxsize=1)
def _tokenizer():
    from nano8k.data.pipeline.datamodule import load_tokenizer

    return load_tokenizer(TOKENIZER_DIR)


def module(train, val=None, **kw) -> TelephoneDataModule:
    kw.setdefault("num_workers", 0)
    kw.setdefault("max_frames_per_batch", 400)
    dm = TelephoneDataModule(str(train), str(val or train), tokenizer_dir=str(TOKENIZER_DIR), **kw)
    dm.set_tokenizer(_tokenizer())
    return dm


def test_batches_hold_what_the_model_consumes(tmp_path):
    manifest = write_jsonl(tmp_path / "m.jsonl", fixture_rows(tmp_path))
    dm = module(manifest, telephone=None, specaugment=None, dither=0.0)
    dm.setup("fit")
    batches = list(dm.val_dataloader())
    assert sum(len(b) for b in batches) == 6
    batch = batches[0]
    assert isinstance(batch, SpeechBatch) and batch.skipped == []
    assert batch.feats.dtype == torch.float32 and batch.feats.shape[2] == 560
    assert batch.feat_lens.max() == batch.feats.shape[1]
    for row, key in enumerate(batch.keys):
        utt = next(u for u in dm.datasets["val"].utterances if u.key == key)
        length, start, count = int(batch.feat_lens[row]), int(batch.audio_start[row]), int(batch.audio_tokens[row])
        assert count == -(-length // 8)
        assert (batch.input_ids[row, start : start + count] == SPEECH_PLACEHOLDER_ID).all()
        source = int(batch.source_lens[row])
        assert (batch.labels[row, :source] == IGNORE_INDEX).all()
        n = int(batch.attention_mask[row].sum())
        target = dm.tokenizer.decode(batch.labels[row, source:n])
        assert target == utt.target + "<|im_end|>" and batch.targets[row] == utt.target
        from nano8k.data.audio import load_audio

        wave, rate = load_audio(utt.audio)
        assert torch.allclose(batch.feats[row, :length], extract_features(wave, rate, FrontendConfig()))


def test_specaugment_changes_train_batches_only(tmp_path):
    manifest = write_jsonl(tmp_path / "m.jsonl", fixture_rows(tmp_path, 4))
    dm = module(
        manifest,
        telephone=None,
        dither=0.0,
        specaugment=SpecAugment(num_freq_masks=2, freq_mask_max_width=8, num_time_masks=2),
    )
    dm.setup("fit")
    train = {k: f[: int(n)] for b in dm.train_dataloader() for k, f, n in zip(b.keys, b.feats, b.feat_lens)}
    val = {k: f[: int(n)] for b in dm.val_dataloader() for k, f, n in zip(b.keys, b.feats, b.feat_lens)}
    assert train.keys() == val.keys()
    assert all(not torch.equal(train[k], val[k]) for k in train)
    plain = module(manifest, telephone=None, specaugment=None, dither=0.0)
    plain.setup("fit")
    for b in plain.val_dataloader():
        for k, f, n in zip(b.keys, b.feats, b.feat_lens):
            assert torch.equal(f[: int(n)], val[k])  # eval features never augmented


def test_train_augmentation_is_reproducible_and_changes_per_epoch(tmp_path):
    manifest = write_jsonl(tmp_path / "m.jsonl", fixture_rows(tmp_path, 4))
    dm = module(manifest, telephone_prob=1.0, telephone_max_input_rate=None, dither=1.0)
    dm.setup("fit")
    ds = dm.datasets["train"]
    assert torch.equal(ds[(0, 0)].feats, ds[(0, 0)].feats)
    assert not torch.equal(ds[(0, 0)].feats, ds[(0, 1)].feats)


def test_mid_epoch_rate_switch_reaches_loader_workers(tmp_path):
    manifest = write_jsonl(tmp_path / "m.jsonl", fixture_rows(tmp_path, 12))
    dm = module(manifest, telephone=None, specaugment=None, dither=0.0, num_workers=1, max_frames_per_batch=40)
    dm.setup("fit")
    loader = dm.train_dataloader()
    batches = iter(loader)  # the worker now holds a copy of the 16 kHz dataset
    first = next(batches)
    dm.set_frontend_rate(8000)
    rest = list(batches)
    prefetched = loader.num_workers * loader.prefetch_factor
    assert len(rest) > prefetched
    dataset = dm.datasets["train"]
    by_key = {u.key: u for u in dataset.utterances}

    def native(batch, row):
        from nano8k.data.audio import load_audio

        wave, rate = load_audio(by_key[batch.keys[row]].audio)
        return extract_features(wave, rate, FrontendConfig(sample_rate=8000))

    assert not torch.allclose(first.feats[0, : first.feat_lens[0]], native(first, 0))
    last = rest[-1]
    assert torch.allclose(last.feats[0, : last.feat_lens[0]], native(last, 0))


def test_set_frontend_rate_switches_to_native_8k(tmp_path):
    manifest = write_jsonl(tmp_path / "m.jsonl", fixture_rows(tmp_path, 2))
    dm = module(manifest, telephone=None, specaugment=None, dither=0.0)
    dm.setup("fit")
    dm.set_frontend_rate(8000)
    item = dm.datasets["val"][0]
    from nano8k.data.audio import load_audio

    wave, rate = load_audio(dm.datasets["val"].utterances[0].audio)
    assert torch.allclose(item.feats, extract_features(wave, rate, FrontendConfig(sample_rate=8000)))
    assert dm.state_dict()["frontend_sample_rate"] == 8000


def _bad_case(tmp_path, case: str) -> dict | str:
    path = tmp_path / f"{case}.wav"
    if case == "corrupt":
        path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage" + bytes(range(64)))
    elif case == "empty_file":
        path.write_bytes(b"")
    elif case == "zero_length":
        sf.write(str(path), np.zeros(0, dtype=np.float32), 8000)
    elif case == "nan":
        wave = np.full(8000, 0.1, dtype=np.float32)
        wave[100] = np.nan
        sf.write(str(path), wave, 8000, subtype="FLOAT")
    elif case == "too_short":
        tone(path, 0.05)
    elif case == "too_long":
        tone(path, 31.0)
    elif case == "bad_json":
        return '{"key": "bad", "source": '
    elif case == "empty_transcript":
        tone(path, 1.0)
        return {"key": case, "source": str(path), "target": ""}
    return {"key": case, "source": str(path), "target": "some words"}  # "missing": path never written


BAD_CASES = [
    "corrupt",
    "empty_file",
    "zero_length",
    "nan",
    "too_short",
    "too_long",
    "missing",
    "bad_json",
    "empty_transcript",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_a_clear_error(tmp_path, case):
    rows = fixture_rows(tmp_path, 3)
    rows.insert(1, _bad_case(tmp_path, case))
    manifest = write_jsonl(tmp_path / "m.jsonl", rows)
    dm = module(manifest, on_bad_sample="error", telephone=None, specaugment=None)
    with pytest.raises(DataError) as info:
        dm.setup("fit")
        list(dm.val_dataloader())
    message = str(info.value)
    assert "m.jsonl:2" in message
    if case != "bad_json":
        assert f"{case}.wav" in message


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_skipped_counted_and_never_substituted(tmp_path, case, caplog):
    rows = fixture_rows(tmp_path, 6)
    rows.insert(2, _bad_case(tmp_path, case))
    manifest = write_jsonl(tmp_path / "m.jsonl", rows)
    dm = module(manifest, on_bad_sample="skip", max_bad_fraction=0.2, telephone=None, specaugment=None)
    dm.setup("fit")
    keys = [k for b in dm.val_dataloader() if b is not None for k in b.keys]
    assert sorted(keys) == sorted(r["key"] for r in fixture_rows(tmp_path, 6))  # six good ones, no stand-in
    log = dm.bad_samples["val"]
    assert log.count == 1 and log.items[0].line == 3
    assert "m.jsonl:3" in caplog.text


def test_load_time_skip_reaches_the_batch_and_the_module_log(tmp_path):
    rows = fixture_rows(tmp_path, 3)
    rows.insert(0, _bad_case(tmp_path, "nan"))  # header is fine: only decoding finds it
    manifest = write_jsonl(tmp_path / "m.jsonl", rows)
    dm = module(
        manifest,
        on_bad_sample="skip",
        max_bad_fraction=0.5,
        telephone=None,
        specaugment=None,
        max_frames_per_batch=10_000,
    )
    dm.setup("fit")
    assert dm.bad_samples["val"].count == 0
    (batch,) = list(dm.val_dataloader())
    assert len(batch) == 3 and [b["key"] for b in batch.skipped] == ["nan"]
    assert dm.bad_samples["val"].count == 1


def test_max_bad_fraction_caps_skips(tmp_path):
    rows = fixture_rows(tmp_path, 3) + [_bad_case(tmp_path, "missing"), _bad_case(tmp_path, "empty_transcript")]
    manifest = write_jsonl(tmp_path / "m.jsonl", rows)
    with pytest.raises(DataError, match="2 of 5 samples are bad"):
        module(manifest, on_bad_sample="skip", max_bad_fraction=0.3).setup("fit")


def test_resume_state_round_trip(tmp_path):
    manifest = write_jsonl(tmp_path / "m.jsonl", fixture_rows(tmp_path, 12))
    kw = dict(telephone=None, specaugment=None, max_frames_per_batch=120, dither=0.0)
    dm = module(manifest, **kw)
    dm.setup("fit")
    loader = dm.train_dataloader()
    loader.batch_sampler.set_epoch(1)
    full = [b.keys for b in loader]
    assert len(full) >= 3
    dm2 = module(manifest, **kw)
    dm2.trainer = SimpleNamespace(training=True, testing=False, global_rank=0, world_size=1)  # as under fit()
    dm2.setup("fit")
    loader2 = dm2.train_dataloader()
    loader2.batch_sampler.set_epoch(1)
    seen = []
    for batch in loader2:
        dm2.on_before_batch_transfer(batch, 0)  # what Lightning calls per training batch
        seen.append(batch.keys)
        if len(seen) == 2:
            break
    state = loader2.state_dict()  # the training loader's position, which Lightning's fit loop checkpoints
    assert state["epoch"] == 1 and state["batches_consumed"] == 2
    dm3 = module(manifest, **kw)
    dm3.load_state_dict(dm2.state_dict())
    dm3.setup("fit")
    loader3 = dm3.train_dataloader()
    loader3.load_state_dict(state)  # as Lightning restores it, after train_dataloader()
    rest = [b.keys for b in loader3]
    assert seen + rest == full


def test_demo_corpus_loads_with_held_out_test_voices():
    import json

    rows = {
        s: [json.loads(line) for line in (DEMO / f"{s}.jsonl").read_text(encoding="utf-8").splitlines()]
        for s in ("train", "val", "test")
    }
    assert {r["lang"] for r in rows["train"]} == {"zh", "en"} == {r["lang"] for r in rows["test"]}
    train_voices = {r["voice"] for r in rows["train"]}
    assert train_voices.isdisjoint({r["voice"] for r in rows["test"]})
    assert {r["voice"] for r in rows["val"]} <= train_voices
    dm = TelephoneDataModule(
        str(DEMO / "train.jsonl"),
        str(DEMO / "val.jsonl"),
        str(DEMO / "test.jsonl"),
        tokenizer_dir=str(TOKENIZER_DIR),
        num_workers=0,
    )
    dm.setup("test")
    ds = dm.datasets["test"]
    assert len(ds) == len(rows["test"]) and all(u.duration and 1.0 < u.duration < 4.5 for u in ds.utterances)
    assert ds[0].feats.shape[1] == 560


def _count_loads(monkeypatch) -> list[str]:
    from nano8k.data.manifests.utterance import Utterance

    calls: list[str] = []
    real = Utterance.load

    def counting(utt, *args, **kwargs):
        calls.append(str(utt.audio))
        return real(utt, *args, **kwargs)

    monkeypatch.setattr(Utterance, "load", counting)
    return calls


def test_deterministic_features_are_computed_once(tmp_path, monkeypatch):
    manifest = write_jsonl(tmp_path / "m.jsonl", fixture_rows(tmp_path, 5))
    calls = _count_loads(monkeypatch)
    dm = module(manifest, telephone=None, specaugment=None, dither=0.0)
    dm.setup("fit")
    first = [b.feats.clone() for b in dm.val_dataloader()]
    again = [b.feats for b in dm.val_dataloader()]
    assert len(calls) == 5 and all(torch.equal(a, b) for a, b in zip(first, again))
    for _ in range(2):
        list(dm.train_dataloader())  # no channel, SpecAugment or dither: cached too
    assert len(calls) == 10
    dm.set_frontend_rate(8000)  # another fbank rate is another entry, not a stale one
    native = [b.feats for b in dm.val_dataloader()]
    assert len(calls) == 15 and not torch.equal(native[0], first[0])


def test_augmented_training_features_are_recomputed(tmp_path, monkeypatch):
    manifest = write_jsonl(tmp_path / "m.jsonl", fixture_rows(tmp_path, 4))
    calls = _count_loads(monkeypatch)
    dm = module(manifest, telephone=None, dither=0.0, specaugment=SpecAugment(num_freq_masks=1, freq_mask_max_width=4))
    dm.setup("fit")
    for _ in range(2):
        list(dm.train_dataloader())
    assert len(calls) == 8
    small = module(manifest, telephone=None, specaugment=None, dither=0.0, feature_cache_mb=0.001)
    small.setup("fit")
    calls.clear()
    for _ in range(2):
        list(small.val_dataloader())  # over budget: nothing kept, nothing wrong
    assert len(calls) == 8


def test_the_models_token_rule_sets_the_speech_slots(tmp_path):
    from nano8k.model.checkpoint import load_pretrained

    manifest = write_jsonl(tmp_path / "m.jsonl", fixture_rows(tmp_path, 3))
    model = load_pretrained(TOKENIZER_DIR)
    for rule, count in (("low_frame_rate", lambda n: -(-n // 8)), ("all_frames", lambda n: n)):
        model.feeding = replace(model.feeding, audio_tokens=rule)
        dm = TelephoneDataModule(
            str(manifest), str(manifest), num_workers=0, telephone=None, specaugment=None, dither=0.0
        )
        dm.connect(model)
        assert dm.feeding.audio_tokens == rule and dm.feeding.dither == 0.0  # the model's rule, the data's dither
        assert dm.tokenizer is model.tokenizer
        dm.setup("fit")
        for batch in dm.val_dataloader():
            assert batch.audio_tokens.tolist() == [count(int(n)) for n in batch.feat_lens]
            assert model(batch).loss.isfinite()  # the spliced slots fit the adaptor frames


def test_padding_multiples_shape_the_batches_and_the_budget_counts_them():
    """Widths are multiples; the sampler plans on the padded lengths, so no batch is over its frame budget."""
    dm = TelephoneDataModule(
        str(DEMO / "val.jsonl"),
        str(DEMO / "val.jsonl"),
        tokenizer_dir=str(TOKENIZER_DIR),
        num_workers=0,
        max_frames_per_batch=300,
        pad_frames_to_multiple=16,
        pad_tokens_to_multiple=8,
    )
    batches = list(dm.val_dataloader())
    assert batches and sum(len(b) for b in batches) == 30
    for batch in batches:
        width = batch.feats.shape[1]
        assert width % 16 == 0 and batch.input_ids.shape[1] % 8 == 0 and len(batch) * width <= 300
        assert width - int(batch.feat_lens.max()) < 16
    with pytest.raises(Exception, match="pad_frames_to_multiple"):
        TelephoneDataModule(str(DEMO / "val.jsonl"), tokenizer_dir=str(TOKENIZER_DIR), pad_frames_to_multiple=0)


def test_tokenizer_dir_follows_the_model_folder_rule(tmp_path):
    """A model folder resolves through its config.yaml (llm_dir, configuration.json remap), not the first subfolder."""
    import json
    import shutil

    from nano8k.data.pipeline.datamodule import load_tokenizer
    from nano8k.model.checkpoint import tokenizer_dir

    release = tmp_path / "release"
    shutil.copytree(TOKENIZER_DIR / "Qwen3-0.6B", release / "llm")
    shutil.copytree(TOKENIZER_DIR / "Qwen3-0.6B", release / "a_decoy")  # what a glob of subfolders would pick
    shutil.copy(TOKENIZER_DIR / "config.yaml", release / "config.yaml")
    (release / "configuration.json").write_text(
        json.dumps({"file_path_metas": {"llm_conf": {"init_param_path": "llm"}}})
    )
    assert tokenizer_dir(release) == release / "llm"
    assert tokenizer_dir(release / "llm") == release / "llm"  # a tokenizer folder (or an HF-layout model) is itself
    assert load_tokenizer(release).pad_token_id == _tokenizer().pad_token_id
    with pytest.raises(DataError, match=str(tmp_path / "empty")):
        load_tokenizer(tmp_path / "empty")
    shutil.rmtree(release / "llm")
    with pytest.raises(DataError, match="names the LLM folder"):
        load_tokenizer(release)


def test_data_keys_are_grouped_into_settings_that_preflight_checks_the_same_way():
    from nano8k.data.pipeline.datamodule import (
        AugmentSettings,
        BatchingSettings,
        LoadingSettings,
        check_data_settings,
    )

    dm = TelephoneDataModule(
        max_frames_per_batch=500, pad_tokens_to_multiple=8, telephone_prob=0.25, on_bad_sample="skip", num_workers=0
    )
    assert dm.batching == BatchingSettings(max_frames_per_batch=500, pad_tokens_to_multiple=8)
    assert dm.batching.pad_multiples == (1, 8)
    assert dm.augment.telephone_prob == 0.25 and isinstance(dm.augment, AugmentSettings)
    assert dm.loading == LoadingSettings(num_workers=0, on_bad_sample="skip")
    assert dm.hparams["max_frames_per_batch"] == 500  # the data.* keys checkpoints keep are unchanged
    with pytest.raises(AttributeError):
        dm.batching.sort_window = 5  # frozen: one place sets them
    # preflight: a config's data section, keys it does not give take the defaults
    check_data_settings(
        {
            "frontend_sample_rate": 8000,
            "dither": 0.0,
            "system_prompt": None,
            "context_header": False,
            "language": None,
            "itn": True,
            "max_frames_per_batch": 2000,
        }
    )
    with pytest.raises(ValueError, match=r"data.pad_frames_to_multiple must be >= 1, got 0"):
        check_data_settings(
            {
                "frontend_sample_rate": 16000,
                "dither": 1.0,
                "system_prompt": None,
                "context_header": False,
                "language": None,
                "itn": True,
                "pad_frames_to_multiple": 0,
            }
        )

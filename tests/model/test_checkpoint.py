"""Checkpoint loading, refusals with actionable messages, full-size layout, and export round trips."""

from __future__ import annotations

import json
import shutil
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import yaml

from benchmarks.release_dims import release_funasr_config, release_qwen_config
from nano8k.errors import CheckpointError
from nano8k.model.checkpoint import build_network, export_funasr, export_hf, load_pretrained
from nano8k.model.convert import Layout, build_config, key_plan, parameter_counts, to_funasr_state_dict
from tests.conftest import TINY_DIR


def official_config() -> dict:
    """The tiny fixture's config.yaml with the release's model sections (other sections as released)."""
    config = yaml.safe_load((TINY_DIR / "config.yaml").read_text())
    for section, values in release_funasr_config().items():
        config[section].update(values)
    return config


@pytest.fixture()
def model_copy(tmp_path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(TINY_DIR, target, ignore=shutil.ignore_patterns("*.wav", "golden*"))
    return target


def _state(path: Path) -> OrderedDict[str, torch.Tensor]:
    return torch.load(path / "model.pt", weights_only=True)["state_dict"]


def _rewrite(path: Path, obj) -> None:
    torch.save(obj, path / "model.pt")


def test_full_size_build_reports_release_parameter_counts():
    network = build_network(build_config(official_config(), release_qwen_config()), device="meta")
    counts = parameter_counts(network)
    assert counts == {"encoder": 221_136_992, "adaptor": 12_604_928, "llm": 596_049_920}
    assert network.config.adaptor_config.layer_norm_eps == 1e-12
    assert network.config.audio_config.num_hidden_layers == 70


def test_full_size_key_names_order_and_shapes_equal_the_release():
    config = build_config(official_config(), release_qwen_config())
    network = build_network(config, device="meta")
    ours = [
        (k, tuple(v.shape))
        for k, v in to_funasr_state_dict(key_plan(Layout.from_config(config)), network.state_dict()).items()
    ]
    fixture_tsv = Path(__file__).resolve().parent.parent / "fixtures" / "fun-asr-nano-state-dict.tsv"
    rows = [
        line.rstrip("\n").split("\t")
        for line in fixture_tsv.read_text().splitlines(True)
        if line.strip() and not line.startswith("#")
    ][1:]
    release = [(r[0], tuple(int(x) for x in r[1].split("x"))) for r in rows if not r[0].startswith("ctc")]
    assert len(release) == 1261
    assert ours == release


@pytest.mark.parametrize("container", ["state_dict", "model", "model_state_dict", None])
def test_containers_prefix_and_dtypes_are_accepted(model_copy, container, golden):
    state = _state(model_copy)
    state = OrderedDict((f"module.{k}", v.float() if i % 2 else v) for i, (k, v) in enumerate(state.items()))
    _rewrite(model_copy, state if container is None else {container: state})
    model = load_pretrained(model_copy)
    reference = load_pretrained(TINY_DIR)
    for (ka, a), (kb, b) in zip(model.network.state_dict().items(), reference.network.state_dict().items()):
        assert ka == kb and torch.equal(a, b)


def test_ctc_tensors_are_reported_kept_for_export_and_not_loaded(model_copy, tmp_path, caplog):
    state = _state(model_copy)
    state["ctc_decoder.linear1.weight"] = torch.randn(8, 4)
    state["ctc.ctc_lo.weight"] = torch.randn(6, 4)
    _rewrite(model_copy, {"state_dict": state})
    with caplog.at_level("WARNING"):
        model = load_pretrained(model_copy)
    assert "2 CTC tensor(s)" in caplog.text and "ctc_decoder" in caplog.text
    assert not any("ctc" in k for k in model.network.state_dict())
    exported = _state(export_funasr(model, tmp_path / "out"))
    assert list(exported)[-2:] == ["ctc_decoder.linear1.weight", "ctc.ctc_lo.weight"]
    assert exported["ctc.ctc_lo.weight"].dtype == torch.float32
    assert torch.equal(exported["ctc.ctc_lo.weight"], state["ctc.ctc_lo.weight"])


def test_ctc_tensors_survive_the_hf_layout(model_copy, tmp_path):
    """The README's recipe: FunASR release -> HF export -> (train) -> FunASR export keeps the release's CTC tensors."""
    state = _state(model_copy)
    state["ctc_decoder.linear1.weight"] = torch.randn(8, 4).to(torch.bfloat16)
    state["ctc.ctc_lo.weight"] = torch.randn(6, 4).to(torch.bfloat16)
    _rewrite(model_copy, {"state_dict": state})
    via_hf = load_pretrained(export_hf(load_pretrained(model_copy), tmp_path / "hf"))
    assert list(via_hf.extra_tensors) == ["ctc_decoder.linear1.weight", "ctc.ctc_lo.weight"]
    exported = _state(export_funasr(via_hf, tmp_path / "funasr"))
    assert list(exported) == list(state)
    for key in state:
        assert torch.equal(exported[key], state[key]), key
    (tmp_path / "hf" / "nano8k_extra_tensors.pt").write_bytes(b"damaged")
    with pytest.raises(CheckpointError, match="nano8k_extra_tensors.pt: cannot be read"):
        load_pretrained(tmp_path / "hf")


def test_refuses_downsample_rate_and_sanm_shift(model_copy):
    for section, key, value in [("audio_adaptor_conf", "downsample_rate", 2), ("audio_encoder_conf", "sanm_shfit", 1)]:
        config = yaml.safe_load((model_copy / "config.yaml").read_text())
        original = config[section][key]
        config[section][key] = value
        (model_copy / "config.yaml").write_text(yaml.safe_dump(config))
        with pytest.raises(CheckpointError, match=rf"config.yaml: {section}.{key}={value} is not supported.*Set it to"):
            load_pretrained(model_copy)
        config[section][key] = original
        (model_copy / "config.yaml").write_text(yaml.safe_dump(config))


@pytest.mark.parametrize("missing", ["model.pt", "config.yaml", "Qwen3-0.6B/config.json"])
def test_missing_files_are_named(model_copy, missing):
    (model_copy / missing).unlink()
    if missing == "config.yaml":
        (model_copy / "config.json").unlink(missing_ok=True)
        with pytest.raises(CheckpointError, match="neither config.yaml"):
            load_pretrained(model_copy)
    else:
        with pytest.raises(CheckpointError, match=rf"{missing}: .*not found"):
            load_pretrained(model_copy)


def test_missing_model_dir_names_the_fix(tmp_path):
    with pytest.raises(CheckpointError, match="model directory not found.*NANO8K_MODEL_DIR"):
        load_pretrained(tmp_path / "nope")


def test_missing_unexpected_and_misshaped_keys_are_named(model_copy):
    state = _state(model_copy)
    removed = state.pop("audio_adaptor.linear2.bias")
    _rewrite(model_copy, {"state_dict": state})
    with pytest.raises(
        CheckpointError, match=r"model.pt: 1 tensor\(s\) missing.*audio_adaptor.linear2.bias.*num_blocks"
    ):
        load_pretrained(model_copy)
    state["audio_adaptor.linear2.bias"] = removed
    state["audio_adaptor.blocks.7.norm1.weight"] = torch.zeros(64)
    _rewrite(model_copy, {"state_dict": state})
    with pytest.raises(CheckpointError, match=r"unexpected tensor\(s\).*audio_adaptor.blocks.7.norm1.weight"):
        load_pretrained(model_copy)
    del state["audio_adaptor.blocks.7.norm1.weight"]
    state["audio_adaptor.linear2.bias"] = torch.zeros(65, dtype=torch.bfloat16)
    _rewrite(model_copy, {"state_dict": state})
    with pytest.raises(CheckpointError, match=r"'audio_adaptor.linear2.bias' has shape \(65,\).*imply \(64,\)"):
        load_pretrained(model_copy)


def test_untied_lm_head_and_garbage_files_are_refused(model_copy):
    state = _state(model_copy)
    state["llm.lm_head.weight"] = state["llm.lm_head.weight"] + 1
    _rewrite(model_copy, {"state_dict": state})
    with pytest.raises(CheckpointError, match="llm.lm_head.weight' differs.*tie_word_embeddings"):
        load_pretrained(model_copy)
    (model_copy / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="model.pt: cannot be read"):
        load_pretrained(model_copy)
    torch.save({"state_dict": {"a": 1}}, model_copy / "model.pt")
    with pytest.raises(CheckpointError, match="entry 'a' is a int, not a tensor"):
        load_pretrained(model_copy)


def test_funasr_export_round_trip_is_bit_exact(tiny_model, tmp_path, golden):
    out = export_funasr(tiny_model, tmp_path / "funasr")
    original, exported = _state(TINY_DIR), _state(out)
    assert list(exported) == list(original)
    for key in original:
        assert exported[key].dtype == torch.bfloat16
        assert torch.equal(exported[key], original[key]), key
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written.pop("nano8k") == {
        "audio_tokens": "low_frame_rate",
        "weights": "release",  # the recipe record
        "prompt": {
            "system_prompt": "You are a helpful assistant.",
            "context_header": False,
            "language": None,
            "itn": True,
        },
    }
    assert written == yaml.safe_load((TINY_DIR / "config.yaml").read_text())
    assert json.loads((out / "Qwen3-0.6B" / "config.json").read_text()) == json.loads(
        (TINY_DIR / "Qwen3-0.6B" / "config.json").read_text()
    )
    reloaded = load_pretrained(out)
    feats = torch.from_numpy(golden["s1_16k_1p30s/inputs_embeds"])[None]
    with torch.no_grad():
        assert torch.equal(reloaded.network(inputs_embeds=feats).logits, tiny_model.network(inputs_embeds=feats).logits)


def test_hf_export_reloads_with_identical_tensors_and_logits(tiny_model, tmp_path, golden):
    out = export_hf(tiny_model, tmp_path / "hf")
    reloaded = load_pretrained(out)
    for (ka, a), (kb, b) in zip(reloaded.network.state_dict().items(), tiny_model.network.state_dict().items()):
        assert ka == kb and torch.equal(a, b)
    assert reloaded.frontend == tiny_model.frontend
    feats = torch.from_numpy(golden["s2_16k_0p83s/inputs_embeds"])[None]
    with torch.no_grad():
        assert torch.equal(reloaded.network(inputs_embeds=feats).logits, tiny_model.network(inputs_embeds=feats).logits)


def test_dtype_options(model_copy):
    model = load_pretrained(model_copy, llm_dtype="bf16", dither=0.5)
    assert model.encoder.layers[0].input_layernorm.weight.dtype == torch.float32
    assert model.llm.embed_tokens.weight.dtype == torch.bfloat16
    assert model.frontend.dither == 0.5
    with pytest.raises(ValueError, match="unknown dtype"):
        load_pretrained(model_copy, dtype="int3")


def test_convert_script_round_trips_through_the_hf_layout(tmp_path):
    import importlib.util
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "scripts" / "convert_checkpoint.py"
    subprocess.run(
        [sys.executable, str(script), str(TINY_DIR), str(tmp_path / "hf"), "--to", "hf"],
        check=True,
        capture_output=True,
    )  # the command line once; the other two conversions in this process
    spec = importlib.util.spec_from_file_location("convert_checkpoint", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.convert(tmp_path / "hf", tmp_path / "funasr", "funasr")
    module.convert(TINY_DIR, tmp_path / "copy", "funasr")
    original, converted = _state(TINY_DIR), _state(tmp_path / "funasr")
    assert list(original) == list(converted)
    assert all(torch.equal(original[k], converted[k]) for k in original)
    assert (tmp_path / "copy" / "configuration.json").exists() and (
        tmp_path / "copy" / "multilingual.tiktoken"
    ).exists()


# the tokenizer classes transformers 4.57 (FunASR 1.4's own inference) can load by name; 5.x names it may not know
TRANSFORMERS_4_TOKENIZER_CLASSES = {"PreTrainedTokenizerFast", "Qwen2Tokenizer", "Qwen2TokenizerFast"}


def test_exported_and_shipped_tokenizers_name_a_class_transformers_4_and_5_both_load(tmp_path):
    """transformers 5 saves ``TokenizersBackend``, a name FunASR's transformers 4 refuses; every export and the shipped
    mini model name a class both read, and transformers 5 still loads them to the same ids."""
    from transformers import AutoTokenizer

    from nano8k.model.bundled import mini_model_dir

    mini = load_pretrained(mini_model_dir())
    folders = {
        "shipped": mini_model_dir() / "Qwen3-0.6B",
        "funasr": export_funasr(mini, tmp_path / "f") / "Qwen3-0.6B",
        "hf": export_hf(mini, tmp_path / "hf"),
    }
    for layout, folder in folders.items():
        named = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))["tokenizer_class"]
        assert named in TRANSFORMERS_4_TOKENIZER_CLASSES, f"{layout}: {named}"
        reloaded = AutoTokenizer.from_pretrained(str(folder))
        assert reloaded("one two 三") == mini.tokenizer("one two 三"), layout

"""Load a Fun-ASR-Nano model directory (FunASR release layout or save_pretrained layout) and export to both layouts."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import AutoTokenizer, FunAsrNanoConfig, FunAsrNanoForConditionalGeneration
from transformers.initialization import no_init_weights

from nano8k.atomic import atomic_torch_save, follow_umask
from nano8k.errors import CheckpointError, FeedingError, one_line
from nano8k.model.convert import (
    EXTRA_PREFIXES,
    Layout,
    build_config,
    expected_funasr_shapes,
    iter_hf_tensors,
    key_plan,
    to_funasr_state_dict,
)
from nano8k.model.features import FrontendConfig
from nano8k.model.feeding import Feeding
from nano8k.model.nano import NanoASR

log = logging.getLogger(__name__)

CONTAINER_KEYS = ("state_dict", "model", "model_state_dict")
HF_SIDECAR = "nano8k_funasr_config.yaml"  # the FunASR config.yaml kept beside an HF-layout export
# tokenizer classes transformers 5 writes that transformers 4.x (FunASR's own inference) does not know, and the name
# both read: in 5.x PreTrainedTokenizerFast is another name of TokenizersBackend
PORTABLE_TOKENIZER_CLASSES = {"TokenizersBackend": "PreTrainedTokenizerFast"}
HF_EXTRAS = "nano8k_extra_tensors.pt"  # the release's tensors the network has no place for (CTC), beside an HF export
ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive; its legacy format is a pickle (b"\x80" first)
MMAP_NEEDS_ZIP = "mmap can only be used with files saved with"  # torch's refusal to memory-map a legacy-format file
NOT_TORCH = "cannot be read: not a torch checkpoint (torch.save writes a zip archive; this file is something else)"
REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")  # weights_only naming the object it refused
DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


def _require(path: Path, what: str, fix: str) -> Path:
    if not path.exists():
        raise CheckpointError(f"{path}: {what} not found. {fix}")
    return path


def _resolve_dtype(dtype: str | torch.dtype | None, default: torch.dtype) -> torch.dtype:
    if dtype is None:
        return default
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPES)}")
    return DTYPES[dtype]


def unwrap_state_dict(checkpoint: Any, source: str) -> OrderedDict[str, torch.Tensor]:
    """Accept {"state_dict": m}, {"model": m}, {"model_state_dict": m} or a raw mapping; strip a ``module.`` prefix."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{source}: expected a dict of tensors, got {type(checkpoint).__name__}")
    for key in CONTAINER_KEYS:
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            checkpoint = checkpoint[key]
            break
    tensors = OrderedDict()
    for key, value in checkpoint.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{source}: entry '{key}' is a {type(value).__name__}, not a tensor; expected one of the containers "
                f"{CONTAINER_KEYS} or a flat name -> tensor mapping"
            )
        tensors[key[len("module.") :] if key.startswith("module.") else key] = value
    return tensors


def _read_mapping(path: Path) -> dict[str, Any]:
    """A YAML or JSON file whose top level is a mapping; ``CheckpointError`` naming the file otherwise."""
    is_json = path.suffix == ".json"  # not yaml for JSON: PyYAML reads 1e-06 as a string
    try:
        with path.open(encoding="utf-8") as stream:  # a stream: PyYAML's message names the file
            data = json.load(stream) if is_json else yaml.safe_load(stream)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise CheckpointError(f"{path}: not valid {'JSON' if is_json else 'YAML'} ({one_line(err)})") from err
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a mapping at the top level")
    return data


def llm_dir(model_dir: Path, funasr: Mapping[str, Any]) -> Path:
    """The release's LLM folder: ``llm_conf.init_param_path``, remapped by configuration.json's file_path_metas."""
    name = (funasr.get("llm_conf") or {}).get("init_param_path") or "Qwen3-0.6B"
    meta = model_dir / "configuration.json"
    if meta.exists():
        metas = _read_mapping(meta).get("file_path_metas", {})
        name = (metas.get("llm_conf") or {}).get("init_param_path", name)
    return model_dir / name


def tokenizer_dir(path: str | os.PathLike) -> Path:
    """The tokenizer folder ``path`` names: a folder with tokenizer files (a tokenizer, or an HF-layout model, which
    keeps its tokenizer beside config.json) is itself; a FunASR release folder its LLM folder (``llm_dir``).

    Raises ``CheckpointError`` naming the path when neither holds a tokenizer.
    """
    path = Path(path).expanduser()
    if _has_tokenizer(path):
        return path
    if not (path / "config.yaml").is_file():
        raise CheckpointError(
            f"{path}: no tokenizer (missing {', '.join(missing_tokenizer_files(path))}) and no "
            "config.yaml of a FunASR model folder; name a tokenizer folder or a model folder"
        )
    llm = llm_dir(path, _read_mapping(path / "config.yaml"))
    if not _has_tokenizer(llm):
        raise CheckpointError(
            f"{path}: its config.yaml names the LLM folder {llm}, which holds no tokenizer "
            f"(missing {', '.join(missing_tokenizer_files(llm))})"
        )
    return llm


def _has_tokenizer(folder: Path) -> bool:
    """Whether ``folder`` holds a whole tokenizer, by the one rule loading uses (:func:`missing_tokenizer_files`)."""
    return not missing_tokenizer_files(folder)


TOKENIZER_VOCABULARY = ("tokenizer.json", ("vocab.json", "merges.txt"))  # either holds a BPE vocabulary


def missing_tokenizer_files(folder: str | os.PathLike) -> list[str]:
    """The tokenizer files ``folder`` lacks (none: it holds a tokenizer): tokenizer_config.json, and the vocabulary
    (tokenizer.json, or vocab.json with merges.txt). Without a vocabulary transformers quietly builds a one-token
    tokenizer and every transcript decodes empty, so loading refuses such a folder up front."""
    folder = Path(folder)
    fast, (vocab, merges) = TOKENIZER_VOCABULARY
    missing = [] if (folder / "tokenizer_config.json").is_file() else ["tokenizer_config.json"]
    if not (folder / fast).is_file() and not ((folder / vocab).is_file() and (folder / merges).is_file()):
        missing.append(f"{fast} (or {vocab} with {merges})")
    return missing


def _require_tokenizer(folder: Path, model_dir: Path) -> None:
    missing = missing_tokenizer_files(folder)
    if missing:
        raise CheckpointError(
            f"{folder}: the tokenizer of model folder {model_dir} is missing {', '.join(missing)}; without it every "
            "transcript would be empty. Copy them from the release's Qwen3-0.6B/ (or re-download / re-export the "
            "model)"
        )


def read_model_configs(model_dir: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """(FunASR ``config.yaml`` mapping, Qwen3 ``config.json`` mapping) of a model dir in either layout.

    FunASR release layout: config.yaml + <LLM folder>/config.json. HF layout (``export_hf``): the kept config.yaml
    (``nano8k_funasr_config.yaml``) + config.json's ``text_config``. Raises ``CheckpointError`` naming the file.
    """
    model_dir = Path(model_dir)
    if (model_dir / "config.yaml").exists():
        funasr = _read_mapping(model_dir / "config.yaml")
        qwen_path = _require(
            llm_dir(model_dir, funasr) / "config.json",
            "LLM config",
            "The release ships Qwen3-0.6B/config.json beside model.pt.",
        )
        return funasr, _read_mapping(qwen_path)
    if (model_dir / "config.json").exists():
        config = _read_mapping(model_dir / "config.json")
        if config.get("model_type") != "fun_asr_nano":
            raise CheckpointError(
                f"{model_dir / 'config.json'}: model_type is {config.get('model_type')!r}, expected 'fun_asr_nano'"
            )
        sidecar = _require(
            model_dir / HF_SIDECAR, HF_SIDECAR, "Export with nano8k (export_hf) to keep the frontend settings."
        )
        return _read_mapping(sidecar), dict(config.get("text_config") or {})
    raise CheckpointError(f"{model_dir}: neither config.yaml (FunASR release layout) nor config.json (HF layout) found")


def _check_state_dict(plan, tensors: Mapping[str, torch.Tensor], network: torch.nn.Module, source: str) -> None:
    expected = expected_funasr_shapes(plan, {k: v.shape for k, v in network.state_dict().items()})
    missing = [key for key in expected if key not in tensors]
    unexpected = [key for key in tensors if key not in expected and not key.startswith(EXTRA_PREFIXES)]
    if missing:
        raise CheckpointError(
            f"{source}: {len(missing)} tensor(s) missing, first: {missing[:5]}. The checkpoint does not match "
            "config.yaml (block counts) or is not a Fun-ASR-Nano model.pt; check audio_encoder_conf.num_blocks/"
            "tp_blocks, audio_adaptor_conf.n_layer and Qwen3-0.6B/config.json num_hidden_layers."
        )
    if unexpected:
        raise CheckpointError(
            f"{source}: {len(unexpected)} unexpected tensor(s), first: {unexpected[:5]}. config.yaml declares fewer "
            "blocks than the checkpoint holds, or the file belongs to another model."
        )
    for key, shape in expected.items():
        if tuple(tensors[key].shape) != shape:
            raise CheckpointError(
                f"{source}: tensor '{key}' has shape {tuple(tensors[key].shape)} but config.yaml/config.json imply "
                f"{shape}; fix the dimensions in config.yaml (audio_encoder_conf/audio_adaptor_conf) or "
                "Qwen3-0.6B/config.json to match the checkpoint."
            )
    embed, head = tensors["llm.model.embed_tokens.weight"], tensors["llm.lm_head.weight"]
    if network.config.tie_word_embeddings and not torch.equal(embed, head):
        raise CheckpointError(
            f"{source}: 'llm.lm_head.weight' differs from 'llm.model.embed_tokens.weight' but the LLM ties them "
            "(tie_word_embeddings true); loading would silently drop one. Set tie_word_embeddings false in "
            "Qwen3-0.6B/config.json if the head was trained separately."
        )


def build_network(
    config: FunAsrNanoConfig,
    *,
    device: str | torch.device = "cpu",
    random_init: bool = False,
    attn_implementation: str = "sdpa",
) -> FunAsrNanoForConditionalGeneration:
    """Construct the network; without ``random_init`` the weights are left uninitialised for a checkpoint to fill."""
    config._attn_implementation = attn_implementation
    skip_init = contextlib.nullcontext() if random_init else no_init_weights()
    with skip_init, torch.device(device):
        network = FunAsrNanoForConditionalGeneration(config)
    network.tie_weights()
    network.eval()
    return network


def load_pretrained(
    model_dir: str | os.PathLike,
    *,
    dtype: str | torch.dtype | None = torch.float32,
    llm_dtype: str | torch.dtype | None = None,
    dither: float | None = None,
    attn_implementation: str = "sdpa",
) -> NanoASR:
    """Load a Fun-ASR-Nano model directory: the FunASR release layout or a nano8k HF (save_pretrained) export.

    The model carries the directory's feeding record (``model.feeding``: token rule, weight lineage, prompt settings,
    fbank rate and dither).

    ``dtype`` is for the encoder and adaptor (the reference keeps them fp32), ``llm_dtype`` for the LLM
    (default: same as ``dtype``). ``dither`` overrides ``frontend_conf.dither`` (absent in the release = 1.0).
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise CheckpointError(
            f"{model_dir}: model directory not found. Download Fun-ASR-Nano-2512 (model.pt, config.yaml, "
            "Qwen3-0.6B/) and point model_dir (or NANO8K_MODEL_DIR) at it."
        )
    audio_dtype = _resolve_dtype(dtype, torch.float32)
    text_dtype = _resolve_dtype(llm_dtype, audio_dtype)
    funasr, qwen = read_model_configs(model_dir)
    feeding = read_feeding(funasr, funasr_config_file(model_dir))  # before any weights: a bad record fails fast
    if dither is not None:
        feeding = dataclasses.replace(feeding, dither=float(dither))
    release = (model_dir / "config.yaml").exists()
    _require_tokenizer(llm_dir(model_dir, funasr) if release else model_dir, model_dir)
    if release:
        model = _load_funasr_layout(model_dir, funasr, qwen, feeding, attn_implementation)
    else:
        model = _load_hf_layout(model_dir, funasr, qwen, feeding, attn_implementation)
    model.network.to(audio_dtype)
    model.llm.to(text_dtype)
    model.network.lm_head.to(text_dtype)
    return model


def _load_funasr_layout(
    model_dir: Path, funasr: dict[str, Any], qwen: dict[str, Any], feeding: Feeding, attn_implementation: str
) -> NanoASR:
    try:
        config = build_config(funasr, qwen, source=str(model_dir / "config.yaml"))
    except ValueError as err:
        raise CheckpointError(str(err)) from err
    weights = _require(model_dir / "model.pt", "model.pt", "The weights file of the release is model.pt.")
    tensors = unwrap_state_dict(load_torch_file(weights, mmap=True), str(weights))
    network = build_network(config, attn_implementation=attn_implementation)
    plan = key_plan(Layout.from_config(config))
    _check_state_dict(plan, tensors, network, str(weights))
    extras = OrderedDict((k, v.clone()) for k, v in tensors.items() if k.startswith(EXTRA_PREFIXES))
    if extras:
        log.warning(
            "%s: %d CTC tensor(s) (%s) are not used by nano8k's LLM path; they are kept unchanged for export only",
            weights,
            len(extras),
            ", ".join(sorted({k.split(".")[0] for k in extras})),
        )
    state = {key: tensor.to(torch.float32) for key, tensor in iter_hf_tensors(plan, tensors)}
    network.load_state_dict(state, strict=True)
    tokenizer = load_tokenizer_files(llm_dir(model_dir, funasr))
    frontend = FrontendConfig.from_funasr(funasr.get("frontend_conf") or {})
    return NanoASR(network, tokenizer, frontend, funasr, qwen, extras, feeding)


def _load_hf_layout(
    model_dir: Path, funasr: dict[str, Any], qwen: dict[str, Any], feeding: Feeding, attn_implementation: str
) -> NanoASR:
    try:
        network = FunAsrNanoForConditionalGeneration.from_pretrained(
            str(model_dir), dtype=torch.float32, attn_implementation=attn_implementation
        )
    except Exception as err:  # transformers and safetensors raise several types for missing or damaged weights
        raise CheckpointError(
            f"{model_dir}: the HF-layout weights cannot be loaded ({one_line(err)}); re-export the model"
        ) from err
    network.eval()
    tokenizer = load_tokenizer_files(model_dir)
    frontend = FrontendConfig.from_funasr(funasr.get("frontend_conf") or {})
    return NanoASR(network, tokenizer, frontend, funasr, qwen, _read_extras(model_dir / HF_EXTRAS), feeding)


def load_tokenizer_files(folder: str | os.PathLike) -> Any:
    """``AutoTokenizer`` from ``folder``; damaged tokenizer files (empty, not JSON, a vocabulary without its parts)
    are a ``CheckpointError`` naming the folder, not the tokenizers library's traceback."""
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except Exception as err:  # json, tokenizers and transformers raise several types for damaged files
        raise CheckpointError(
            f"{folder}: its tokenizer files cannot be loaded ({one_line(err)}); copy them again "
            "from the model's release"
        ) from err


def describe_checkpoint_file(path: str | os.PathLike, *, lightning: bool = False) -> str | None:
    """Why ``path`` cannot be loaded as a torch checkpoint, on one line, or None when it can.

    The reasons: not found, empty, truncated, not a torch checkpoint, holds a pickled object that ``weights_only``
    refuses (named; never torch's advice to load it with ``weights_only=False``, which would run the file's code), or
    damaged; with ``lightning``, also not a Lightning checkpoint (no ``state_dict`` entry). The file is read as every
    load reads it (``torch.load(weights_only=True)``), memory-mapped, so its tensors are not read. ``fit --ckpt_path``,
    ``nano8k average``, the export after fit and model loading all give these words, after ``<path>: ``.
    """
    return _read_torch_file(Path(path), mmap=True, lightning=lightning)[1]


def load_torch_file(path: str | os.PathLike, *, mmap: bool = False, lightning: bool = False) -> Any:
    """``torch.load`` of tensors and plain data only, on the CPU (``mmap``: memory-mapped where the file allows);
    ``CheckpointError`` ``<path>: <why>`` with :func:`describe_checkpoint_file`'s reason when it cannot be read."""
    contents, why = _read_torch_file(Path(path), mmap=mmap, lightning=lightning)
    if why is not None:
        raise CheckpointError(f"{path}: {why}")
    return contents


def _read_torch_file(path: Path, mmap: bool, lightning: bool) -> tuple[Any, str | None]:
    """(the file's contents, None), or (None, why it cannot be loaded)."""
    try:
        contents = _torch_load(path, mmap)
    except Exception as err:  # torch raises several types for a damaged file
        return None, _file_problem(path) or _load_problem(err, path)
    if lightning and (not isinstance(contents, Mapping) or "state_dict" not in contents):
        return None, "not a Lightning checkpoint (no 'state_dict' entry)"
    return contents, None


def _torch_load(path: Path, mmap: bool) -> Any:
    """``torch.load(weights_only=True)`` on the CPU; a legacy-format file, which torch cannot memory-map, is read
    without ``mmap`` (only that refusal is retried)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except RuntimeError as err:
        if mmap and MMAP_NEEDS_ZIP in str(err):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=False)
        raise


def _file_problem(path: Path) -> str | None:
    """What is wrong with the file itself, seen without unpickling it (missing, empty, truncated, not torch's)."""
    if not path.is_file():
        return "not found" if not path.exists() else "not a file"
    size = path.stat().st_size
    if size == 0:
        return "the file is empty (0 bytes): a write that never finished"
    try:
        head = _head(path)
    except OSError as err:  # no read permission, an I/O error
        return f"cannot be read ({err.strerror or one_line(err)})"
    if head == ZIP_MAGIC:
        if not zipfile.is_zipfile(path):
            return f"truncated: the archive stops after {size} bytes, before its end (a copy or write cut short)"
        return None
    if not head.startswith(b"\x80"):  # neither torch.save's zip archive nor its legacy pickle (protocol >= 2)
        return NOT_TORCH
    return None


def _head(path: Path) -> bytes:
    """The file's first bytes, enough to tell torch.save's zip archive."""
    with path.open("rb") as handle:
        return handle.read(len(ZIP_MAGIC))


def _load_problem(err: Exception, path: Path) -> str:
    """Why ``torch.load`` refused a file whose outside looked right: a pickled object ``weights_only`` refuses, or
    damage, without torch's advice to retry with ``weights_only=False``."""
    text = str(err)
    refused = REFUSED_GLOBAL.search(text)
    if refused and not _torch_has(refused.group(1)):  # a cut-off name (legacy format): torch has no such object
        return f"damaged: cannot be read as a torch checkpoint (it names {refused.group(1)}, which torch does not have)"
    if refused:
        return (
            f"holds a pickled {refused.group(1)}, which nano8k does not load: torch files are read with "
            "weights_only=True, so no code in a file is run; save only tensors and plain data (nano8k's own "
            "checkpoints hold nothing else)"
        )
    if "Weights only load failed" in text:  # anything else the restricted unpickler met: not torch's pickle
        detail = text.split("WeightsUnpickler error:", 1)[-1].split("Check the documentation of torch.load")[0]
        detail = one_line(detail).split(". Please use")[0]  # torch's advice on allowing what it refused
        if _head(path) != ZIP_MAGIC:
            return f"cannot be read: not a torch checkpoint, or a damaged one in torch's legacy format ({detail})"
        return f"damaged: cannot be read as a torch checkpoint ({detail})"
    detail = one_line(text.split(" This is an internal miniz error")[0])  # cut torch's advice on corrupt archives
    return f"damaged: cannot be read as a torch checkpoint ({type(err).__name__}: {detail})"


def _torch_has(name: str) -> bool:
    """False for a ``torch.`` name torch does not have (looked up in the imported modules, nothing is imported)."""
    if not name.startswith("torch."):
        return True
    found: Any = torch
    for part in name.split(".")[1:]:
        found = getattr(found, part, None)
        if found is None:
            return False
    return True


def _read_extras(path: Path) -> OrderedDict[str, torch.Tensor]:
    """The extra (CTC) tensors an HF export kept, in their release order; none when the export had none."""
    if not path.exists():
        return OrderedDict()
    tensors = unwrap_state_dict(load_torch_file(path), str(path))
    stray = [key for key in tensors if not key.startswith(EXTRA_PREFIXES)]
    if stray:
        raise CheckpointError(
            f"{path}: holds tensors that are not extras of the release ({stray[:5]}); "
            f"it should hold only {EXTRA_PREFIXES} tensors"
        )
    return tensors


def read_feeding(funasr: Mapping[str, Any], source: Path) -> Feeding:
    """The model dir's feeding record (config.yaml); ``CheckpointError`` naming the file."""
    try:
        return Feeding.from_funasr(funasr, str(source))
    except FeedingError as err:
        raise CheckpointError(str(err)) from err


def funasr_config_file(model_dir: str | os.PathLike) -> Path:
    """The file holding a model dir's FunASR config: config.yaml (release layout) or the HF export's kept copy."""
    model_dir = Path(model_dir)
    return model_dir / "config.yaml" if (model_dir / "config.yaml").exists() else model_dir / HF_SIDECAR


def exported_funasr_config(model: NanoASR) -> dict[str, Any]:
    """The config.yaml an export writes: the loaded one carrying the model's feeding (``Feeding.written_into``)."""
    return model.feeding.written_into(model.funasr_config)


def funasr_state_dict(model: NanoASR, dtype: torch.dtype = torch.bfloat16) -> OrderedDict[str, torch.Tensor]:
    """The model's weights under the released key names and order, cast to ``dtype``; CTC extras appended as loaded."""
    plan = key_plan(Layout.from_config(model.network.config))
    hf = model.network.state_dict()
    out = OrderedDict(
        (k, v.detach().to("cpu", dtype).contiguous().clone()) for k, v in to_funasr_state_dict(plan, hf).items()
    )
    out.update(model.extra_tensors)
    return out


def export_funasr(model: NanoASR, out_dir: str | os.PathLike, *, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Write the FunASR release layout: model.pt ({"state_dict": ...}, bf16), config.yaml, Qwen3-0.6B/ (config,
    tokenizer)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    llm_name = (model.funasr_config.get("llm_conf") or {}).get("init_param_path") or "Qwen3-0.6B"
    atomic_torch_save({"state_dict": funasr_state_dict(model, dtype)}, out / "model.pt")
    (out / "config.yaml").write_text(
        yaml.safe_dump(exported_funasr_config(model), sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    llm_dir = out / llm_name
    llm_dir.mkdir(parents=True, exist_ok=True)
    (llm_dir / "config.json").write_text(json.dumps(model.qwen_config, indent=2) + "\n", encoding="utf-8")
    save_tokenizer(model.tokenizer, llm_dir)
    follow_umask(out)
    return out


def save_tokenizer(tokenizer: Any, folder: Path) -> None:
    """``tokenizer.save_pretrained(folder)`` with a ``tokenizer_class`` that transformers 4.x and 5.x both load, so
    FunASR's own inference (transformers 4) reads what nano8k (transformers 5) exports."""
    tokenizer.save_pretrained(str(folder))
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    portable = PORTABLE_TOKENIZER_CLASSES.get(config.get("tokenizer_class"))
    if portable is not None:
        config["tokenizer_class"] = portable
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def export_hf(model: NanoASR, out_dir: str | os.PathLike) -> Path:
    """Write the transformers layout (save_pretrained + tokenizer) plus the FunASR config (frontend settings, feeding
    record) and the release's extra (CTC) tensors, so a FunASR export made from it drops nothing."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.network.save_pretrained(str(out))
    save_tokenizer(model.tokenizer, out)
    if model.extra_tensors:
        atomic_torch_save(OrderedDict(model.extra_tensors), out / HF_EXTRAS)
    else:
        (out / HF_EXTRAS).unlink(missing_ok=True)  # an earlier export's extras in this folder are not this model's
    (out / HF_SIDECAR).write_text(
        yaml.safe_dump(exported_funasr_config(model), sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    follow_umask(out)  # save_pretrained leaves model.safetensors 0600, the other files follow the umask
    return out


def copy_release_extras(src_dir: str | os.PathLike, out_dir: str | os.PathLike) -> None:
    """Copy files of the release that nano8k does not rewrite (configuration.json, multilingual.tiktoken)."""
    for name in ("configuration.json", "multilingual.tiktoken"):
        if (Path(src_dir) / name).exists():
            shutil.copy2(Path(src_dir) / name, Path(out_dir) / name)

"""Hopper guard (pytorch#196678): cuDNN SDPA goes off on compute capability 9.x unless opted in; untouched elsewhere."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from nano8k.inference import api
from nano8k.model import attention_guard
from nano8k.model.attention_guard import ALLOW_CUDNN_SDPA_ENV, guard_cudnn_sdpa
from nano8k.training.module import NanoASRModule

CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def _restored_backend(monkeypatch):
    threads, cudnn_sdp = torch.get_num_threads(), torch.backends.cuda.cudnn_sdp_enabled()
    torch.backends.cuda.enable_cudnn_sdp(True)
    monkeypatch.delenv(ALLOW_CUDNN_SDPA_ENV, raising=False)
    yield
    torch.backends.cuda.enable_cudnn_sdp(cudnn_sdp)
    torch.set_num_threads(threads)


def gpu_capability(monkeypatch, capability: tuple[int, int]) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)


def test_hopper_disables_cudnn_sdpa(monkeypatch):
    gpu_capability(monkeypatch, (9, 0))
    description = guard_cudnn_sdpa(CUDA)
    assert torch.backends.cuda.cudnn_sdp_enabled() is False
    assert "disabled" in description and "196678" in description and ALLOW_CUDNN_SDPA_ENV in description


@pytest.mark.parametrize("capability", [(8, 0), (8, 9), (10, 0)])
def test_other_gpus_leave_cudnn_sdpa_on(monkeypatch, capability):
    gpu_capability(monkeypatch, capability)
    description = guard_cudnn_sdpa(CUDA)
    assert torch.backends.cuda.cudnn_sdp_enabled() is True
    assert "not Hopper" in description


def test_cpu_leaves_cudnn_sdpa_on_without_asking_cuda(monkeypatch):
    def no_cuda(device=None):
        raise AssertionError("a CPU device must not query CUDA")

    monkeypatch.setattr(torch.cuda, "get_device_capability", no_cuda)
    guard_cudnn_sdpa(torch.device("cpu"))
    guard_cudnn_sdpa("cpu")
    assert torch.backends.cuda.cudnn_sdp_enabled() is True


def test_opt_in_keeps_cudnn_sdpa_on_hopper(monkeypatch):
    gpu_capability(monkeypatch, (9, 0))
    monkeypatch.setenv(ALLOW_CUDNN_SDPA_ENV, "1")
    assert "kept on" in guard_cudnn_sdpa(CUDA)
    assert torch.backends.cuda.cudnn_sdp_enabled() is True
    monkeypatch.delenv(ALLOW_CUDNN_SDPA_ENV)
    guard_cudnn_sdpa(CUDA, allow=True)
    assert torch.backends.cuda.cudnn_sdp_enabled() is True
    guard_cudnn_sdpa(CUDA, allow=False)
    assert torch.backends.cuda.cudnn_sdp_enabled() is False


def test_unknown_opt_in_value_is_refused_naming_the_variable(monkeypatch):
    gpu_capability(monkeypatch, (9, 0))
    monkeypatch.setenv(ALLOW_CUDNN_SDPA_ENV, "maybe")
    with pytest.raises(ValueError, match=f"{ALLOW_CUDNN_SDPA_ENV}='maybe'"):
        guard_cudnn_sdpa(CUDA)
    assert torch.backends.cuda.cudnn_sdp_enabled() is True


def test_description_is_logged_once(monkeypatch, caplog):
    gpu_capability(monkeypatch, (9, 0))
    monkeypatch.setattr(attention_guard, "_already_logged", set())
    with caplog.at_level("INFO", logger=attention_guard.__name__):
        guard_cudnn_sdpa(CUDA)
        guard_cudnn_sdpa(CUDA)
    assert sum("196678" in record.getMessage() for record in caplog.records) == 1


def test_training_setup_guards_the_trainers_device(monkeypatch):
    gpu_capability(monkeypatch, (9, 0))
    trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=CUDA), datamodule=None)
    NanoASRModule.setup(SimpleNamespace(trainer=trainer), "fit")  # setup reads only the trainer here
    assert torch.backends.cuda.cudnn_sdp_enabled() is False


def test_inference_load_model_guards_its_device(monkeypatch):
    guarded: list[torch.device] = []
    monkeypatch.setattr(api, "guard_cudnn_sdpa", lambda device, allow=None: guarded.append(device) or "")
    api.load_for_inference("tiny", "cpu", None)
    assert guarded == [torch.device("cpu")]

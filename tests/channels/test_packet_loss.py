"""Packet loss: the configured fraction of 20 ms frames is lost (independently or in bursts) and concealed."""

from __future__ import annotations

import numpy as np
import pytest

from nano8k.data.channel.effects import EffectContext, PacketLoss

from .conftest import speech_8k

FRAME = 160  # 20 ms at 8 kHz


def _run(effect: PacketLoss, x: np.ndarray, seed: int = 0) -> tuple[np.ndarray, dict]:
    params: dict = {}
    return effect.apply(x, np.random.default_rng(seed), EffectContext(params=params)), params


def _lost_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    frames = x.size // FRAME
    return np.array(
        [not np.array_equal(x[i * FRAME : (i + 1) * FRAME], y[i * FRAME : (i + 1) * FRAME]) for i in range(frames)]
    )


@pytest.mark.parametrize("rate", [0.02, 0.1, 0.3])
def test_drops_the_configured_fraction_and_silences_it(rate):
    x = speech_8k(120.0) + 1e-3  # no frame is digital silence already
    y, params = _run(PacketLoss(loss_rate=(rate, rate), concealment=("silence",)), x)
    lost = _lost_mask(x, y)
    assert params["lost_frames"] == lost.sum() and params["frames"] == 6000
    assert abs(lost.mean() - rate) < 0.25 * rate + 0.005, lost.mean()
    for i in np.flatnonzero(lost):
        assert not y[i * FRAME : (i + 1) * FRAME].any()  # silence
    assert y.shape == x.shape


def test_bursty_losses_keep_the_rate_and_come_in_runs():
    x = speech_8k(300.0) + 1e-3
    y, _ = _run(PacketLoss(loss_rate=(0.1, 0.1), burst_frames=4.0, concealment=("silence",)), x, seed=3)
    lost = _lost_mask(x, y)
    edges = np.diff(np.concatenate([[0], lost.astype(int), [0]]))
    runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    assert abs(lost.mean() - 0.1) < 0.03, lost.mean()
    assert 3.0 <= runs.mean() <= 5.0, runs.mean()  # independent losses at 10 % would average 1.1 frames
    y, _ = _run(PacketLoss(loss_rate=(0.1, 0.1), concealment=("silence",)), x, seed=3)
    edges = np.diff(np.concatenate([[0], _lost_mask(x, y).astype(int), [0]]))
    independent = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    assert 1.0 <= independent.mean() <= 1.25  # independent losses at 10 %: runs of 1 / (1 - 0.1) = 1.11 frames


def test_repeat_and_fade_conceal_with_the_last_frame_received():
    x = speech_8k(30.0) + 1e-3
    for mode in ("repeat", "fade"):
        y, params = _run(PacketLoss(loss_rate=(0.2, 0.2), concealment=(mode,)), x, seed=5)
        lost = _lost_mask(x, y)
        assert params["concealment"] == mode and lost.any()
        for i in np.flatnonzero(lost)[:50]:
            if i == 0:
                continue
            run = 1
            while lost[i - run] if i - run >= 0 else False:
                run += 1
            last_good = x[(i - run) * FRAME : (i - run + 1) * FRAME]
            gain = 1.0 if mode == "repeat" else 0.5**run
            np.testing.assert_allclose(y[i * FRAME : (i + 1) * FRAME], last_good * gain)


def test_reproducible_and_validated():
    x = speech_8k(5.0)
    effect = PacketLoss()
    a, pa = _run(effect, x, 9)
    b, pb = _run(effect, x, 9)
    np.testing.assert_array_equal(a, b)
    assert pa == pb
    with pytest.raises(ValueError, match="concealment"):
        PacketLoss(concealment=("interpolate",))
    with pytest.raises(ValueError, match="loss_rate"):
        PacketLoss(loss_rate=(0.2, 0.9))
    with pytest.raises(ValueError, match="burst_frames"):
        PacketLoss(burst_frames=0.5)

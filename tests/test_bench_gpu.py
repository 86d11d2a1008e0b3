"""benchmarks/bench_gpu.py runs end to end (tiny model, CPU): every recipe trains and every figure is written."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_smoke_run_on_cpu(tmp_path, one_torch_thread):
    spec = importlib.util.spec_from_file_location("bench_gpu", REPO_ROOT / "benchmarks" / "bench_gpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(
        [
            "--tiny",
            "--device",
            "cpu",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--batches",
            "2",
            "--max_frames",
            "300",
            "--out_dir",
            str(tmp_path),
        ]
    )
    report = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert [r["recipe"] for r in report["results"]] == ["adaptor", "encoder_adaptor", "lora"]
    for result in report["results"]:
        assert result["steps_timed"] == 2 and result["step_s"] > 0 and result["tflops_per_step"] > 0
        assert result["audio_hours_per_gpu_hour"] > 0 and result["preflight_estimate_gib"] > 0
        assert math.isnan(result["peak_memory_gib"]) and result["optimizer"] == "fused"
    trained = {r["recipe"]: r["trainable"] for r in report["results"]}
    assert trained["adaptor"]["encoder"] == 0 < trained["encoder_adaptor"]["encoder"] and trained["lora"]["lora"] > 0
    assert "| encoder_adaptor |" in (tmp_path / "gpu_bench.md").read_text()

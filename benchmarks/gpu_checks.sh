#!/usr/bin/env bash
# The checks that need a GPU, as one short run on a lent machine (not run yet: no GPU has been lent since it was
# written). Each fit is 4 steps of the tiny model on the demo corpus; a failure stops the script. The full-size
# benchmark is separate: python benchmarks/bench_gpu.py (<= 8 min).
#   bash benchmarks/gpu_checks.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python benchmarks/check_hopper_sdpa.py
pip install -q -e '.[deepspeed]'
short_fit() {  # $1: run name; the rest: extra flags
  local name=$1; shift
  python -m nano8k.fit --config configs/demo.yaml --model.model_dir tiny --trainer.max_steps 4 \
    --trainer.val_check_interval 2 --trainer.limit_val_batches 1 --trainer.accelerator gpu --trainer.devices 1 \
    --trainer.default_root_dir "runs/gpu_checks/$name" "$@"
}
short_fit deepspeed_zero2 --trainer.strategy deepspeed_stage_2 --trainer.precision bf16-mixed
short_fit fsdp --trainer.strategy fsdp --trainer.precision bf16-mixed
short_fit fp16_gradscaler --trainer.precision 16-mixed   # the GradScaler path of the device-side step skip (foreach AdamW)
short_fit bf16_fused_clip --trainer.precision bf16-mixed --trainer.gradient_clip_val 5.0   # fused AdamW, own clipping
echo "gpu checks passed"

#!/usr/bin/env bash
# The GPU check, as one prepared command for a machine with a GPU and no internet.
#
# Here first:   bash benchmarks/fetch_gpu_wheels.sh
# There (device tool, carry [".whl", ".data"]):   bash benchmarks/gpu_check.sh
#
# 1. installs Keras and the small packages the machine lacks from the carried wheels;
# 2. runs `lossbench bench` with the JAX backend (matmul ceiling, training throughput at
#    batch 32 and 512 in float32/bfloat16/float16, whole-epoch efficiency);
# 3. time permitting (GPU_CHECK_TRAIN_SECONDS, default 420 s), a full 100-epoch run of one
#    loss (GPU_CHECK_LOSS, default categorical_crossentropy) on the carried real images.
# Everything it measures is written under $OUT (or reports/benchmarks/gpu/ without $OUT).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-reports/benchmarks/gpu}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/workflow KERAS_BACKEND=jax PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/nvidia-smi.txt"

python3 -m lossbench.cli --params params.yaml bench --backends jax --output "$out" \
  2>&1 | tee "$out/bench.log"

archive=.data/cifar10-jpeg.tar.gz
if [ -f "$archive" ]; then
  python3 - "$archive" "$out" <<'PYTHON'
import sys
from pathlib import Path

import yaml

archive, out = Path(sys.argv[1]), Path(sys.argv[2])
params = yaml.safe_load(Path("params.yaml").read_text())
params["download"].update(source=str(archive), md5=None,
                          sha256="ff26949c34c4e67da3fa472a1f142e33365dea058f94f1fa369b14ef3d986968")
params["preprocess"]["dataset"] = "image_folder"
# The GPU or nothing: a job that finds no GPU stops at once instead of training on the CPU.
# steps_per_execution and jit_compile stay `auto` (on a GPU: several steps per call, XLA on).
params["train"]["device"] = "gpu"
(out / "params-gpu.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
PYTHON
  python3 -m lossbench.cli --params "$out/params-gpu.yaml" preprocess --input "$archive" \
    --output /tmp/prepared --counts "$out/counts.json"
  loss=${GPU_CHECK_LOSS:-categorical_crossentropy}
  timeout "${GPU_CHECK_TRAIN_SECONDS:-420}" python3 -m lossbench.cli --params "$out/params-gpu.yaml" \
    train --loss "$loss" --seed 0 --data /tmp/prepared --model /tmp/model.keras \
    --log-dir "$out/training-$loss" --checkpoint-dir /tmp/checkpoint 2>&1 | tail -n 120 \
    > "$out/train.log" || echo "training stopped at the time limit; see $out/training-$loss/history.json"
fi
ls -la "$out"

#!/usr/bin/env bash
# The GPU check, as one prepared command for a machine with a GPU and no internet.
#
# Here first:   bash benchmarks/fetch_gpu_wheels.sh
# There (device tool, carry [".whl", ".data"]):   bash benchmarks/gpu_check.sh
# Here, on the CPU, to show it works (tests/test_gpu_check.py):   bash benchmarks/gpu_check.sh --dry-run
#
# 1. installs Keras and the small packages the machine lacks from the carried wheels;
# 2. runs `lossbench bench --quick` with the JAX backend (matmul ceilings, training throughput
#    at batch 32 and 512 in float32/bfloat16/float16, a short epoch each), stopped after
#    GPU_CHECK_BENCH_SECONDS (default 240). Quick, because the full bench runs a whole epoch
#    per row and writes its JSON only at the end: with JAX running op by op (Keras refuses
#    XLA for this model, see lossbench.train.training) it would outlast the check's budget and
#    leave nothing; the trainings below measure whole epochs;
# 3. trains the paper's three losses on the carried real images (full size: all 60,000,
#    width 1, params.yaml's epochs) one after the other, each for its share of what is left
#    of GPU_CHECK_SECONDS (default 570, so that the whole check ends within 10 minutes):
#    as many epochs as fit;
# 4. writes $out/gpu-check.json: per loss the seconds and images/s of each epoch and the test
#    accuracy after it; the bench's rows (benchmarks/gpu_check.py says what else).
# Everything is written under $OUT (or reports/benchmarks/gpu/ without $OUT).
#
# --dry-run runs the same steps on this CPU, shrunk (benchmarks/gpu_check.py, DRY_RUN: width
# 0.05, 96 + 32 images, one epoch; `lossbench bench --dry-run`), so that a typo fails here and
# not when a GPU is lent: no wheels installed (this environment's Python, $PYTHON or python3),
# no nvidia-smi, train.device cpu, and the JAX backend of the GPU machine where JAX is
# installed (TensorFlow otherwise: the same commands, another backend). The images come from
# GPU_CHECK_ARCHIVE (default .data/cifar10-jpeg.tar.gz; the test gives a small synthetic one).
set -euo pipefail
cd "$(dirname "$0")/.."
dry_run=false
for argument in "$@"; do
  case "$argument" in
    --dry-run) dry_run=true ;;
    *) echo "usage: bash benchmarks/gpu_check.sh [--dry-run]" >&2; exit 2 ;;
  esac
done
out=${OUT:-reports/benchmarks/gpu}
archive=${GPU_CHECK_ARCHIVE:-.data/cifar10-jpeg.tar.gz}
budget=${GPU_CHECK_SECONDS:-570}
bench_seconds=${GPU_CHECK_BENCH_SECONDS:-240}
losses=(categorical_crossentropy hinge squared_hinge)
mkdir -p "$out"
# The prepared arrays, checkpoints and models are made from CIFAR-10: they stay out of $out
# (which comes back from the lent machine) and are deleted however the check ends.
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
started=$SECONDS

if $dry_run; then
  python=${PYTHON:-python3}
  export PYTHONPATH=$PWD/workflow
  if "$python" -c "import jax" 2>/dev/null; then backend=jax; else backend=tensorflow; fi
  bench_options=(--dry-run)
  check_options=(--dry-run)
else
  python=python3
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD/workflow
  backend=jax
  bench_options=(--quick)
  check_options=()
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/nvidia-smi.txt"
fi
export KERAS_BACKEND=$backend PYTHONUNBUFFERED=1
# The bench and the three trainings share JAX's compilation cache, so that each computation
# is compiled once, not once per process (a dry run's second process takes a third of the
# first's CPU time).
export JAX_COMPILATION_CACHE_DIR=$work/jax-cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 \
  JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=-1
if [ ! -f "$archive" ]; then
  echo "gpu_check: no images at $archive (run benchmarks/fetch_gpu_wheels.sh here first, or set GPU_CHECK_ARCHIVE)" >&2
  exit 2
fi
params="$out/params-check.yaml"
"$python" benchmarks/gpu_check.py params --archive "$archive" --output "$params" \
  ${check_options[@]+"${check_options[@]}"}

# A status of 124 is `timeout` stopping a command at its limit: planned, not a failure.
failed=0
set +e
timeout "$bench_seconds" "$python" -m lossbench.cli --params "$params" bench --backends "$backend" \
  --output "$out" --name bench ${bench_options[@]+"${bench_options[@]}"} 2>&1 | tee "$out/bench.log"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ] && [ "$status" -ne 124 ]; then failed=1; fi

"$python" -m lossbench.cli --params "$params" preprocess --input "$archive" \
  --output "$work/prepared" --counts "$out/counts.json"

runs=()
for index in "${!losses[@]}"; do
  loss=${losses[$index]}
  # This loss's share of the time left: the losses still to train split it evenly.
  limit=$(( (budget - (SECONDS - started)) / (${#losses[@]} - index) ))
  if [ "$limit" -lt 1 ]; then limit=1; fi
  set +e
  timeout "$limit" "$python" -m lossbench.cli --params "$params" train --loss "$loss" --seed 0 \
    --data "$work/prepared" --model "$work/model-$loss.keras" --log-dir "$out/training-$loss" \
    --checkpoint-dir "$work/checkpoint-$loss" > "$out/train-$loss.log" 2>&1
  status=$?
  set -e
  tail -n 5 "$out/train-$loss.log"
  if [ "$status" -ne 0 ] && [ "$status" -ne 124 ]; then failed=1; fi
  runs+=(--run "$loss=$limit:$status")
done

"$python" benchmarks/gpu_check.py summary --out "$out" --budget "$budget" \
  --elapsed "$(( SECONDS - started ))" "${runs[@]}" ${check_options[@]+"${check_options[@]}"}
ls -la "$out"
exit "$failed"

#!/usr/bin/env bash
# The paper-scale GPU command (issue 28), as one prepared script for a lent GPU machine with no
# internet: the pack curve, then the next chunk of reports/studies/gpu-paper-scale/.
#
# Here first:   bash benchmarks/fetch_gpu_wheels.sh
# There (device tool, carry [".whl", ".data"], LOSSBENCH_COMMIT=<this commit>):
#               bash benchmarks/gpu_paper_scale.sh
# Here, on the CPU, to show it works (tests/test_gpu_paper_scale.py):
#               bash benchmarks/gpu_paper_scale.sh --dry-run
#
# 1. installs Keras and the small packages the machine lacks from the carried wheels;
# 2. measures the pack curve (benchmarks/gpu_paper_scale.py curve: packs of 1-24 runs at batch
#    32 each, float32 and bf16, path and compiled rates, host share) for at most
#    PAPER_SCALE_CURVE_SECONDS (default 150), into $out/pack-curve.json;
# 3. prepares the carried images (all 60,000, full size) once;
# 4. trains the study's next chunk (one loss's seeds left, as one pack, as many as the curve
#    projects to finish) in what is left of PAPER_SCALE_SECONDS (default 570, so that the whole
#    command ends within 10 minutes), evaluates each finished run, and writes its records under
#    $out/study/ (runs/<run>/..., chunk.json with the commit, machine and wall times).
# Everything comes back under $OUT (or reports/benchmarks/gpu-paper-scale/ without $OUT); the
# prepared arrays, models and checkpoints (made from CIFAR-10, and too large) stay in a
# temporary folder that is deleted however the command ends.
#
# --dry-run runs the same steps on this CPU, shrunk (gpu_paper_scale.py's DRY_RUN and
# DRY_CURVE: width 0.05, 96 + 32 images, one epoch, two seeds as a pack of two), with this
# environment's Python ($PYTHON or python3), JAX where it is installed, train.device cpu, and the
# images of PAPER_SCALE_ARCHIVE (default .data/cifar10-jpeg.tar.gz; the test gives a small one).
set -euo pipefail
cd "$(dirname "$0")/.."
dry_run=false
for argument in "$@"; do
  case "$argument" in
    --dry-run) dry_run=true ;;
    *) echo "usage: bash benchmarks/gpu_paper_scale.sh [--dry-run]" >&2; exit 2 ;;
  esac
done
out=${OUT:-reports/benchmarks/gpu-paper-scale}
archive=${PAPER_SCALE_ARCHIVE:-.data/cifar10-jpeg.tar.gz}
budget=${PAPER_SCALE_SECONDS:-570}
curve_seconds=${PAPER_SCALE_CURVE_SECONDS:-150}
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/paper-scale.XXXXXX")
trap 'rm -rf "$work"' EXIT
started=$SECONDS
options=()
if $dry_run; then
  python=${PYTHON:-python3}
  export PYTHONPATH=$PWD/workflow
  options=(--dry-run)
else
  python=python3
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD/workflow
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/nvidia-smi.txt"
fi
if ! "$python" -c "import jax" 2>/dev/null; then
  echo "gpu_paper_scale: packs need the JAX backend, and this Python has no jax" >&2
  exit 2
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
export JAX_COMPILATION_CACHE_DIR=$work/jax-cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 \
  JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=-1
if [ ! -f "$archive" ]; then
  echo "gpu_paper_scale: no images at $archive (run benchmarks/fetch_gpu_wheels.sh here first, or set PAPER_SCALE_ARCHIVE)" >&2
  exit 2
fi
params="$out/params-chunk.yaml"
"$python" benchmarks/gpu_paper_scale.py params --archive "$archive" --output "$params" \
  ${options[@]+"${options[@]}"}

# A status of 124 is `timeout` stopping the curve at its limit: planned, not a failure (the
# curve also stops itself between rows once its seconds are spent).
failed=0
set +e
timeout "$(( curve_seconds + 60 ))" "$python" benchmarks/gpu_paper_scale.py curve --params "$params" \
  --out "$out" --seconds "$curve_seconds" ${options[@]+"${options[@]}"} 2>&1 | tee "$out/curve.log"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ] && [ "$status" -ne 124 ]; then failed=1; fi

mkdir -p "$work/data"
"$python" -m lossbench.cli --params "$params" preprocess --input "$archive" \
  --output "$work/data/prepared" --counts "$work/data/counts.json"

left=$(( budget - (SECONDS - started) ))
if [ "$left" -lt 1 ]; then left=1; fi
"$python" benchmarks/gpu_paper_scale.py chunk --params "$params" --data "$work/data" \
  --work "$work" --out "$out" --seconds "$left" --curve "$out/pack-curve.json" \
  ${options[@]+"${options[@]}"} || failed=1
ls -laR "$out" | head -60
exit "$failed"

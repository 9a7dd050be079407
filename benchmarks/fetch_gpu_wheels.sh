#!/usr/bin/env bash
# Run here (a machine with PyPI), in the repository root, before benchmarks/gpu_check.sh is
# run on a lent GPU machine: downloads, into .whl/ (git-ignored), the wheels of what that
# machine lacks (it has Python 3.12 with JAX+CUDA, numpy, scipy, pandas, seaborn, PyYAML,
# but no Keras and no internet), and copies the real-image archive into .data/.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl .data
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
grep -qx '/.data/' .git/info/exclude 2>/dev/null || echo '/.data/' >> .git/info/exclude
platforms=()
for n in 17 27 28; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64)
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl \
  keras==3.15.1 namex==0.1.0 optree==0.20.0 jsonschema==4.26.0 \
  jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
archive=../shared/data/cifar10-jpeg.tar.gz
if [ -f "$archive" ]; then cp "$archive" .data/; fi
du -sh .whl .data

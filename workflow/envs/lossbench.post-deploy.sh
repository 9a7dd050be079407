#!/usr/bin/env bash
# Run by Snakemake inside the freshly created rule environment (lossbench.yaml), from the
# project root: install this checkout's lossbench package, editable, so that the rules run
# the code they list as inputs. Its dependencies are already pinned in lossbench.yaml.
set -euo pipefail
python -m pip install --no-deps -e .

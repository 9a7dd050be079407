"""The pipeline's own description, read by the front ends rather than deciding any result: the
stage table (`stages`, `dvc_plots`), params.yaml's loader (`params`), run names (`runs`), each
stage's code dependencies (`sources`), the Snakemake/DVC lock (`orchestration`) and the command
line's signal and log handling (`interrupts`, `native_logs`). No stage depends on this folder's
files as code (lossbench.pipeline.sources says why)."""

# The benchmark: not part of the default target. Run it with
#   snakemake --cores 1 --resources gpu=1 bench
# (DVC: dvc repro benchmarks/dvc.yaml). Its numbers are ratios against this machine's own
# matmul rate, measured in the same run; see workflow/lossbench/bench.py. Command and
# output: workflow/lossbench/pipeline/stages.py.


rule bench:
    input:
        **stage_inputs("bench"),
    output:
        **stage_outputs("bench"),
    log:
        "reports/logs/bench.log",
    conda:
        ENVIRONMENT
    resources:
        gpu=1,
    shell:
        stage_command("bench")

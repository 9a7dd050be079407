# The benchmark: not part of the default target. Run it with
#   snakemake --cores 1 --resources gpu=1 bench
# (DVC: dvc repro benchmarks/dvc.yaml). Its numbers are ratios against this machine's own
# matmul rate, measured in the same run; see workflow/lossbench/bench.py.


rule bench:
    input:
        package_source("bench"),
    output:
        "reports/benchmarks/local.json",
    conda:
        ENVIRONMENT
    resources:
        gpu=1,
    log:
        "reports/logs/bench.log",
    shell:
        "lossbench bench --output reports/benchmarks --name local 2>&1 | tee {log}"

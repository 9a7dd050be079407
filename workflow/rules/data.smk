# Data: download the archive (checksummed), then decode it into uint8 arrays.


rule download:
    input:
        package_source("download"),
    output:
        "data/raw/archive",
    params:
        values=stage_values("download"),
    conda:
        ENVIRONMENT
    log:
        "reports/logs/download.log",
    shell:
        "lossbench download --output {output} 2>&1 | tee {log}"


rule preprocess:
    input:
        package_source("preprocess"),
        archive="data/raw/archive",
    output:
        data=directory("data/prepared"),
        counts="reports/data/counts.json",
    params:
        values=stage_values("preprocess"),
    conda:
        ENVIRONMENT
    log:
        "reports/logs/preprocess.log",
    shell:
        "lossbench preprocess --input {input.archive} --output {output.data}"
        " --counts {output.counts} 2>&1 | tee {log}"

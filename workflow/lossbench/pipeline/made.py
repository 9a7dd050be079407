"""What each output was made with, so that Snakemake sees what DVC (or anyone) made as stale.

In:  a finished job (its stage, run, first output and the params it read), or, for Snakemake,
     a job about to be planned (its stage, wildcards, outputs and inputs).
Out: `record_made`: a small JSON file beside the job's first output, `.<name>.made.json`,
     holding the stage's parameter values (`stage_fingerprint`) and the file's SHA-256;
     `params_stamp`: the path of a stamp file that a rule takes as an input, dated now when
     the job must run again and 1970 otherwise; `check_inputs`, which refuses an input file
     whose bytes are not those its stage recorded (edited in place, or replaced by hand).

Why: Snakemake reruns a job when a value under its `params:` changed, but only for outputs it
made itself (it keeps that record in .snakemake/metadata/). Outputs made by `dvc repro` had no
such record, so after `dvc exp run` and an edit of `model.width`, `snakemake -n` said "Nothing
to be done" while `dvc status` listed the change. Every `lossbench <stage>` now records what it
read beside its output, whichever tool ran it, and each rule's stamp input makes Snakemake
rerun the job (and, through its outputs, everything after it) when the record disagrees with
params.yaml. The same stamp is dated now when an output exists but an input it was made from
is missing (a deleted model, or an evaluation Snakemake removed after a killed job), because
Snakemake does not remake a missing file that only feeds outputs it finds up to date.

Why the digest: an edit in place that keeps size and time (a model's weights, a summary's
number) is invisible to both tools, and DVC's hardlinked cache copy is edited with it; the stage
that reads the file is the last place to notice, and it refuses, naming how to get it back.

A job run by hand with other paths (`lossbench train --model /tmp/x.keras`) records beside
that path, never beside the pipeline's outputs. An output brought back by `dvc checkout` or
`dvc exp apply` keeps the record of whoever made the file now there last: Snakemake may rerun
such a job once more than needed, never less.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Iterable

from lossbench.io.atomic import write_text
from lossbench.io.digests import file_sha256
from lossbench.pipeline.params import stage_fingerprint
from lossbench.pipeline.stages import STAGE_PARAMS, snakemake_inputs, snakemake_outputs

# Snakemake's working directory: the stamps mean nothing to git or DVC.
STAMP_DIRECTORY = Path(".snakemake") / "lossbench" / "params-of"


def record_path(output: str | Path) -> Path:
    """The record beside `output` (a file or a directory): `<parent>/.<name>.made.json`."""
    output = Path(output)
    return output.parent / f".{output.name}.made.json"


def record_made(stage: str, params: dict, output: str | Path) -> None:
    """Record, beside `output`, the values of the params that `stage` read to make it and,
    for a file, its SHA-256 (a directory's files have checks of their own, e.g. the prepared
    arrays' manifest)."""
    record = {"stage": stage, "params": json.loads(stage_fingerprint(params, stage))}
    if Path(output).is_file():
        record["sha256"] = file_sha256(output)
    write_text(record_path(output), json.dumps(record, indent=2) + "\n")


def input_flags(stage: str) -> list[str]:
    """The options of `lossbench <stage>` that name its inputs, read from the stage table's
    command (`--model {input.model}`: an input of evaluate, an output of train)."""
    from lossbench.pipeline.stages import stage as stage_entry

    return re.findall(r"(--[\w-]+) \{input\.\w+\}", stage_entry(stage).command)


def check_inputs(args) -> None:
    """Before a stage of the DAG runs: refuse (ValueError) an input file that differs from
    what the stage that wrote it recorded (its SHA-256 beside it): a model or a summary edited
    by hand would otherwise flow into every result after it. A directory input is checked
    file by file (the per-run files of an aggregate stage under DVC)."""
    if args.stage not in STAGE_PARAMS:
        return
    for flag in input_flags(args.stage):
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        for path in map(Path, value if isinstance(value, list) else [value] if value else []):
            files = [path] if path.is_file() else [
                record.parent / record.name[1:].removesuffix(".made.json")
                for record in path.glob(".*.made.json")] if path.is_dir() else []
            for file in files:
                _check_file(file)


def _check_file(path: Path) -> None:
    try:
        made = json.loads(record_path(path).read_text())
        expected = made["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # no record (an older run, or a file from elsewhere): nothing to compare with
    if path.is_file() and file_sha256(path) != expected:
        stage = made.get("stage", "the stage that wrote it")
        raise ValueError(
            f"{path} is not the file `lossbench {stage}` wrote (its SHA-256 differs from the one "
            f"recorded beside it, {record_path(path)}): it was edited or replaced. Restore it "
            f"with `dvc checkout {path}` (if DVC has it), or make it again: `dvc repro -f "
            f"{stage}` or `snakemake --forcerun {stage} --cores 1 --resources gpu=1`.")


def record_outputs(args, params: dict) -> None:
    """After a stage of the DAG (one that reads params) succeeded: record beside its first
    output (each model of a train pack) what it was made with."""
    if args.stage not in STAGE_PARAMS:
        return
    outputs = args.model if isinstance(getattr(args, "model", None), list) else [args.output]
    for output in outputs:
        record_made(args.stage, params, output)


def changed_keys(stage: str, params: dict, output: str | Path) -> list[str]:
    """The keys whose values differ between params.yaml and the record beside `output`;
    empty when they agree or when there is no readable record (then Snakemake's own
    bookkeeping decides)."""
    try:
        made = json.loads(record_path(output).read_text())["params"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    current = json.loads(stage_fingerprint(params, stage))
    return sorted(key for key in set(current) | set(made) if current.get(key) != made.get(key))


def params_stamp(stage: str, params: dict, outputs: Iterable[str], inputs: Iterable[str]) -> str:
    """The stamp file of the job whose first of `outputs` names it: dated now when the job
    must run again (its record names other values, or an output exists while one of
    `inputs` is missing), 1970 otherwise. Returns its path, for the rule's inputs."""
    outputs, inputs = list(outputs), list(inputs)
    stamp = STAMP_DIRECTORY / outputs[0]
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.touch()
    reasons = []
    changed = changed_keys(stage, params, outputs[0])
    if changed:
        reasons.append(f"it was made with other values of {', '.join(changed)}")
    if any(os.path.exists(path) for path in outputs):
        missing = [path for path in inputs if not os.path.exists(path)]
        if missing:
            reasons.append(f"{missing[0]}, which it was made from, is missing")
    if reasons:
        print(f"lossbench: {outputs[0]} will be made again: {'; and '.join(reasons)}.", file=sys.stderr)
        now = time.time()
        os.utime(stamp, (now, now))
    else:
        os.utime(stamp, (0, 0))
    return str(stamp)


def job_files(name: str, runs: list[str], losses: list[str],
              wildcards: dict[str, str]) -> tuple[list[str], list[str]]:
    """One job's output paths and data input paths (no code), its wildcards filled in."""
    outputs = [output.path.format(**wildcards) for output in snakemake_outputs(name).values()]
    inputs = []
    for key, value in snakemake_inputs(name, runs, losses).items():
        if key != "code":
            inputs += [path.format(**wildcards) for path in ([value] if isinstance(value, str) else value)]
    return outputs, inputs


"""Every committed study is a params file the pipeline runs: no study has a driver of its own.

Each study lists its arms in reports/studies/<study>/study.yaml: the arm's complete params file,
the folders of its per-run records (`runs`) and tune results (`tune`), and the stage it stops
after (`until`). For every arm this checks what a user relies on to reproduce it:
- the params file names every key of params.yaml (nothing is left from the values params.yaml
  had before `lossbench use-params`) and is valid;
- the study's README gives the arm's two commands, Snakemake's and DVC's, verbatim;
- a dry run of the Snakemake command, in a copy of the project, plans exactly the trainings
  the study recorded, and tune jobs that train a grid exactly where the study tuned.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from lossbench.pipeline.params import load_params, validate_params
from projects import PROJECT, run

STUDIES = sorted((PROJECT / "reports" / "studies").glob("*/study.yaml"))
SNAKEMAKE = "snakemake --cores 1 --resources gpu=1"
# A run's record: <loss>-seed<seed>.json, as the pipeline names reports/metrics/.
RECORD = re.compile(r"(?P<loss>\w+)-seed(?P<seed>\d+)\.json")


def arms() -> list[tuple[str, str, dict]]:
    found = []
    for study_file in STUDIES:
        for arm, spec in yaml.safe_load(study_file.read_text())["arms"].items():
            found.append((study_file.parent.name, arm, spec))
    return found


ARMS = arms()
ARM_IDS = [f"{study}-{arm}" for study, arm, _ in ARMS]


def commands(study: str, arm: str, spec: dict) -> tuple[str, str]:
    """The arm's Snakemake and DVC commands, as study.yaml's header and the README give them."""
    use = f"lossbench use-params {spec['params']}"
    until = spec.get("until")
    snakemake = f"{use} && {SNAKEMAKE}" + (f" --until {until}" if until else "")
    dvc = f"{use} && dvc exp run -n {study}-{arm}" + (f" {until}" if until else "")
    return snakemake, dvc


def planned_jobs(dry_run: str) -> dict[str, set[tuple[str, ...]]]:
    """{rule: {wildcard values}} of the jobs a `snakemake --dry-run` lists."""
    jobs: dict[str, set[tuple[str, ...]]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", dry_run):
        rule = re.match(r"(?:local)?rule (\w+):", block.strip())
        if not rule:
            continue
        wildcards = re.search(r"wildcards: (.+)", block)
        values = tuple(value.split("=")[1] for value in wildcards.group(1).split(", ")) if wildcards else ()
        jobs.setdefault(rule.group(1), set()).add(values)
    return jobs


def recorded_runs(folder: str | None, params: dict) -> set[tuple[str, str]]:
    """The (loss, seed) of the records in `folder`; for a pre-registered study whose runs have
    not started (no folder yet), every loss and seed its params name."""
    if folder is None:
        return set()
    if not (PROJECT / folder).exists():
        return {(loss, str(seed)) for loss in params["train"]["losses"] for seed in params["train"]["seeds"]}
    records = [RECORD.fullmatch(path.name) for path in (PROJECT / folder).glob("*.json")]
    assert records and all(records), f"{folder} holds no <loss>-seed<seed>.json records"
    return {(record["loss"], record["seed"]) for record in records}


def test_every_study_with_runs_has_its_arms_listed():
    """A study folder with per-run records and no study.yaml would be a study no one can rerun;
    gpu-paper-scale is the exception until its chunks run (benchmarks/gpu_paper_scale.sh)."""
    listed = {path.parent.name for path in STUDIES}
    studies = {path.name for path in (PROJECT / "reports" / "studies").iterdir() if path.is_dir()}
    assert studies - listed == {"gpu-paper-scale"}
    assert not list((PROJECT / "reports" / "studies").glob("*/run_*.py")), "a study driver is back"


@pytest.mark.parametrize("study, arm, spec", ARMS, ids=ARM_IDS)
def test_an_arms_params_file_names_every_value_and_is_valid(study, arm, spec):
    written = yaml.safe_load((PROJECT / spec["params"]).read_text())
    shipped = load_params(PROJECT / "params.yaml")
    assert {(section, key) for section, keys in written.items() for key in keys} == {
        (section, key) for section, keys in shipped.items() for key in keys}
    validate_params(written)
    assert spec.keys() <= {"params", "runs", "tune", "until"}


@pytest.mark.parametrize("study, arm, spec", ARMS, ids=ARM_IDS)
def test_the_study_readme_gives_the_arms_commands(study, arm, spec):
    readme = (PROJECT / "reports" / "studies" / study / "README.md").read_text()
    for command in commands(study, arm, spec):
        assert f"    {command}\n" in readme, f"README of {study} lacks:\n{command}"


@pytest.mark.parametrize("study, arm, spec", ARMS, ids=ARM_IDS)
def test_a_dry_run_of_an_arm_plans_exactly_the_runs_it_recorded(tmp_path, study, arm, spec):
    for name in ("Snakefile", "params.yaml", ".gitignore"):
        shutil.copy(PROJECT / name, tmp_path / name)
    shutil.copytree(PROJECT / "workflow", tmp_path / "workflow",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (tmp_path / Path(spec["params"]).parent).mkdir(parents=True)
    shutil.copy(PROJECT / spec["params"], tmp_path / spec["params"])
    command, _ = commands(study, arm, spec)
    use_params, snakemake = command.split(" && ")
    run(use_params.split(), tmp_path)
    # The copy's download source is not there: a dry run plans the download, it does not read it.
    jobs = planned_jobs(run([*snakemake.split(), "--dry-run"], tmp_path).stdout)
    params = load_params(tmp_path / "params.yaml")

    expected = recorded_runs(spec.get("runs"), params)
    assert jobs.get("train", set()) == expected
    assert jobs.get("evaluate", set()) == expected
    # Every loss gets a tune job; it trains a grid only where the study tuned that loss.
    tune_folder = spec.get("tune")
    assert jobs["tune"] == {(loss,) for loss in params["train"]["losses"]}
    if tune_folder is None:
        assert params["tune"]["learning_rates"] == []
    else:
        tuned = {path.stem: yaml.safe_load(path.read_text()) for path in (PROJECT / tune_folder).glob("*.json")}
        assert set(tuned) == set(params["train"]["losses"])
        for result in tuned.values():
            # The rates tried: the params' grid, then any it was extended by (never fewer).
            assert result["learning_rates"][:len(params["tune"]["learning_rates"])] == params["tune"]["learning_rates"]
            assert result["seeds"] == params["tune"]["seeds"]
            assert result["epochs"] == params["tune"]["epochs"]

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

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from lossbench.pipeline.params import load_params, validate_params
from lossbench.pipeline.runs import run_names
from lossbench.pipeline.study_runs import SNAKEMAKE, arm_commands, read_study
from projects import PROJECT, run

STUDIES = sorted((PROJECT / "reports" / "studies").glob("*/study.yaml"))
# A run's record: <loss>-seed<seed>.json, as the pipeline names reports/metrics/.
RECORD = re.compile(r"(?P<loss>\w+)-seed(?P<seed>\d+)\.json")


def arms() -> list[tuple[str, str, dict]]:
    return [(path.parent.name, arm, spec) for path in STUDIES for arm, spec in read_study(path.parent).items()]


ARMS = arms()
ARM_IDS = [f"{study}-{arm}" for study, arm, _ in ARMS]


def commands(study: str, arm: str, spec: dict) -> tuple[str, str]:
    """The arm's Snakemake and DVC commands (lossbench.pipeline.study_runs, which
    `lossbench study` runs), as study.yaml's header and the README give them."""
    folder = PROJECT / "reports" / "studies" / study
    snakemake, dvc = (arm_commands(folder, tool)[arm] for tool in ("snakemake", "dvc"))
    use = f"lossbench use-params {spec['params']}"
    assert snakemake.startswith(f"{use} && {SNAKEMAKE}") and dvc.startswith(f"{use} && dvc exp run -n {study}-{arm}")
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
    assert spec.keys() <= {"params", "runs", "evaluation", "training", "tune", "until"}


@pytest.mark.parametrize("study, arm, spec", ARMS, ids=ARM_IDS)
def test_the_study_readme_gives_the_arms_commands(study, arm, spec):
    readme = (PROJECT / "reports" / "studies" / study / "README.md").read_text()
    for command in (*commands(study, arm, spec), f"lossbench study reports/studies/{study}"):
        assert f"    {command}\n" in readme, f"README of {study} lacks:\n{command}"


def dry_run(root: Path, params_file: str, command: str) -> tuple[dict[str, set[tuple[str, ...]]], dict]:
    """In a copy of the project at `root`: `command` (`lossbench use-params <params_file> &&
    snakemake ...`) as a dry run; returns the jobs it plans and the params it ran with."""
    for name in ("Snakefile", "params.yaml", ".gitignore"):
        shutil.copy(PROJECT / name, root / name)
    shutil.copytree(PROJECT / "workflow", root / "workflow",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (root / Path(params_file).parent).mkdir(parents=True)
    shutil.copy(PROJECT / params_file, root / params_file)
    use_params, snakemake = command.split(" && ")
    run(use_params.split(), root)
    # The copy's download source is not there: a dry run plans the download, it does not read it.
    jobs = planned_jobs(run([*snakemake.split(), "--dry-run"], root).stdout)
    return jobs, load_params(root / "params.yaml")


@pytest.mark.parametrize("study, arm, spec", ARMS, ids=ARM_IDS)
def test_a_dry_run_of_an_arm_plans_exactly_the_runs_it_recorded(tmp_path, study, arm, spec):
    jobs, params = dry_run(tmp_path, spec["params"], commands(study, arm, spec)[0])

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


def test_the_paper_scale_study_plans_its_24_runs_in_packs_of_8(tmp_path):
    """gpu-paper-scale (no study.yaml: its chunks run on a lent GPU) is a params file the
    pipeline runs too: put into params.yaml it plans exactly its pre-registered runs, the paper's
    three losses × seeds 0-7, no tuning, packs of 8. The keys added since it was committed are
    not in it; they take the shipped values, which are what its code did (the ReLU on the class
    scores) or decide nothing here (the tuning rule, with no rates to tune)."""
    params_file = "reports/studies/gpu-paper-scale/params.yaml"
    jobs, params = dry_run(tmp_path, params_file, f"lossbench use-params {params_file} && {SNAKEMAKE}")

    runs = {(loss, str(seed)) for loss in ("categorical_crossentropy", "hinge", "squared_hinge")
            for seed in range(8)}
    assert jobs["train"] == jobs["evaluate"] == runs
    assert params["train"]["epochs"] == 100 and params["model"]["width"] == 1.0
    assert params["train"]["pack_size"] == 8 and params["tune"]["learning_rates"] == []
    written = yaml.safe_load((PROJECT / params_file).read_text())
    added = {(section, key) for section, keys in params.items() for key in keys} - {
        (section, key) for section, keys in written.items() for key in keys}
    assert added == {("model", "final_convolution_activation"), ("tune", "preferred_rate"),
                     ("tune", "max_grid_extensions")}
    assert params["model"]["final_convolution_activation"] == "relu"


# ---------------------------------------------------------------------------------------------
# `lossbench study`: every arm in order through a tool, and its records back into the study.
# ---------------------------------------------------------------------------------------------


def fake_study(root: Path) -> Path:
    """A project at `root` with a two-arm study: `small` (trainings) and `tuned` (the tune stage
    only), each a complete params file."""
    shutil.copy(PROJECT / "params.yaml", root / "params.yaml")
    study = root / "reports" / "studies" / "toy"
    shipped = load_params(PROJECT / "params.yaml")
    entries = {}
    for arm, width, until in (("small", 0.1, None), ("tuned", 0.2, "tune")):
        params = json.loads(json.dumps(shipped))
        params["model"]["width"] = width
        params["train"]["losses"], params["train"]["seeds"] = ["categorical_crossentropy", "hinge"], [0, 1]
        (study / arm).mkdir(parents=True)
        (study / arm / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        entries[arm] = {"params": f"reports/studies/toy/{arm}/params.yaml"}
        if until:
            entries[arm].update(tune=f"reports/studies/toy/{arm}/tune", until=until)
        else:
            entries[arm].update({folder: f"reports/studies/toy/{arm}/{name}" for folder, name in (
                ("runs", "metrics"), ("evaluation", "evaluation"), ("training", "training"))})
    (study / "study.yaml").write_text(yaml.safe_dump({"arms": entries}, sort_keys=False))
    return study


def test_the_study_command_runs_each_arm_through_the_tool_and_collects_its_records(tmp_path, monkeypatch, capsys):
    from lossbench.pipeline import study_runs

    study = fake_study(tmp_path)
    calls = []

    def tool(command, cwd):
        """What the pipeline would write under the values params.yaml holds now."""
        params = load_params(Path(cwd) / "params.yaml")
        calls.append((command, params["model"]["width"]))
        width = json.dumps({"width": params["model"]["width"]})
        for name in run_names(params["train"]):
            for folder in ("metrics", "evaluation"):
                (Path(cwd) / "reports" / folder).mkdir(parents=True, exist_ok=True)
                (Path(cwd) / "reports" / folder / f"{name}.json").write_text(width)
                (Path(cwd) / "reports" / folder / f".{name}.made.json").write_text("{}")
            logs = Path(cwd) / "reports" / "training" / name
            logs.mkdir(parents=True, exist_ok=True)
            for name in ("history.json", "run.json", "metrics.csv"):
                (logs / name).write_text("{}")
        for loss in params["train"]["losses"]:
            (Path(cwd) / "reports" / "tune").mkdir(parents=True, exist_ok=True)
            (Path(cwd) / "reports" / "tune" / f"{loss}.json").write_text("{}")
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(study_runs.subprocess, "run", tool)
    assert study_runs.run_study(study, "snakemake", root=tmp_path) == 0
    # Each arm ran under its own values, with the command its README gives.
    assert calls == [(SNAKEMAKE.split(), 0.1), ([*SNAKEMAKE.split(), "--until", "tune"], 0.2)]
    small = study / "small"
    assert sorted(path.relative_to(small).as_posix() for path in small.rglob("*") if path.is_file()) == sorted(
        ["params.yaml"] + [f"{folder}/{run}.json" for folder in ("metrics", "evaluation")
                           for run in run_names({"losses": ["categorical_crossentropy", "hinge"], "seeds": [0, 1]})]
        + [f"training/{run}/{name}" for run in run_names({"losses": ["categorical_crossentropy", "hinge"],
                                                          "seeds": [0, 1]}) for name in ("history.json", "run.json")])
    assert json.loads((small / "metrics/hinge-seed1.json").read_text()) == {"width": 0.1}
    assert sorted(path.name for path in (study / "tuned" / "tune").iterdir()) == ["categorical_crossentropy.json",
                                                                                 "hinge.json"]
    assert "small: 16 records copied" in capsys.readouterr().out


def test_the_study_command_stops_at_a_failed_arm_and_names_what_it_does_not_know(tmp_path, monkeypatch, capsys):
    from lossbench.cli import main
    from lossbench.pipeline import study_runs

    study = fake_study(tmp_path)
    monkeypatch.setattr(study_runs.subprocess, "run", lambda command, cwd: subprocess.CompletedProcess(command, 3))
    assert study_runs.run_study(study, "dvc", root=tmp_path) == 3
    assert "small failed (exit 3); its records were not collected" in capsys.readouterr().out
    assert not (study / "small" / "metrics").exists()
    with pytest.raises(ValueError, match="has no arm 'large'; its arms: small, tuned"):
        study_runs.run_study(study, "snakemake", arms=["large"], root=tmp_path)
    # --dry-run: the commands, and params.yaml left as it was.
    before = (tmp_path / "params.yaml").read_text()
    monkeypatch.chdir(tmp_path)
    assert main(["study", "reports/studies/toy", "--tool", "dvc", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert ("lossbench use-params reports/studies/toy/tuned/params.yaml && dvc exp run -n toy-tuned tune" in out
            and (tmp_path / "params.yaml").read_text() == before)
    assert main(["study", "reports/studies/absent"]) == 2
    assert "reports/studies/absent/study.yaml not found" in capsys.readouterr().err

"""End to end on real CIFAR-10 images: Snakemake runs the DAG, DVC records and reruns it.

In a temporary git repository holding a copy of the project, with ../shared/data beside it
(small stratified subsets, a narrow model, two epochs, set by an overlay file appended to the
README's own `lossbench use-params` lines):

1. the README's offline Snakemake line runs the whole DAG to the report;
2. `dvc commit` records those outputs, after which `dvc status` finds nothing to do;
3. code that decides no result (a version bump, a comment in params.py) leaves both tools
   with nothing to do, and an edit to the losses makes both want the training again;
4. editing a parameter makes both tools want the same stages (a Snakemake dry run's reasons
   and `dvc status`), for a data parameter and for a training parameter;
5. the README's offline DVC line (`lossbench use-params ... && dvc exp run`), verbatim, with
   this study's overlay and one more epoch appended, reruns the DAG, and the review commands
   (`dvc metrics diff`, `dvc params diff`, `dvc plots diff`) show what the change did;
6. a bad `-S` value is refused by dvc.yaml's first stage before DVC deletes any output;
7. packs: Snakemake's and DVC's train jobs train a pack of two runs and write what lone runs
   write.
"""

import json
import os
import re
from pathlib import Path

import pytest

from lossbench.pipeline.params import load_params
from lossbench.pipeline.params_gate import GATE_STAGE
from projects import (
    PROJECT,
    checkout_beside_shared,
    needs_real_images,
    run,
    set_params,
    write_overlay,
)
from test_readme import OFFLINE, readme_table_commands

pytestmark = [pytest.mark.slow, needs_real_images]


PARAMS_CHANGED = "Params have changed since last execution"


def snakemake_changed_stages(root: Path, reason: str = PARAMS_CHANGED,
                             output: str | None = None) -> set[str]:
    """Stages a dry run would rerun for `reason` (a regular expression; by default: their params
    changed), named as DVC names them; `output`: a dry run's output to read instead of running
    one.

    (`snakemake --list-changes params` lists every output in Snakemake 9.27, changed or not,
    so the dry run's per-job reasons are read instead.)
    """
    if output is None:
        result = run(["snakemake", "--dry-run", "--cores", "1"], root)
        output = result.stdout + result.stderr
    stages = set()
    for block in re.split(r"^rule ", output, flags=re.M)[1:]:
        if not re.search(reason, block):
            continue
        rule = block.split(":", 1)[0]
        wildcards = re.search(r"^    wildcards: loss=(\S+), seed=(\d+)$", block, re.M)
        stages.add(rule + (f"@{wildcards[1]}-{wildcards[2]}" if wildcards else ""))
    return stages


def dvc_changed_stages(root: Path, dependency: str = "params.yaml") -> set[str]:
    """Stages `dvc status` finds changed in a dependency whose path ends with `dependency`."""
    status = json.loads(run(["dvc", "status", "--json"], root).stdout)
    # DVC's first stage reruns on any change to params.yaml and never reruns another by itself.
    status.pop(GATE_STAGE, None)
    return {
        stage for stage, changes in status.items()
        if any("changed deps" in change and any(key.endswith(dependency) for key in change["changed deps"])
               for change in changes if isinstance(change, dict))
    }


# The tiny study of these tests: an overlay appended to the README's offline commands.
TINY = {
    "preprocess.train_size": 400,
    "preprocess.test_size": 200,
    "model.width": 0.1,
    "train.losses": ["categorical_crossentropy", "hinge"],
    "train.seeds": [0, 1],
    "train.epochs": 2,
    # The fair comparison's path: one tuning run per loss on a hold-out split, and
    # training at the rate it chose.
    "tune.learning_rates": [0.03],
    "tune.epochs": 1,
    "train.learning_rate": "tuned",
}


def readme_line_with(tool: str, *overlays: Path) -> str:
    """The README's offline command for `tool`, verbatim, with `overlays` appended to its
    `lossbench use-params` (the README: a later file wins)."""
    command = readme_table_commands()[(OFFLINE, tool)]
    use_params, rest = command.split(" && ", 1)
    return " ".join([use_params, *map(str, overlays)]) + " && " + rest


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    # A checkout with the shared data beside it, as the README's offline command expects.
    base = tmp_path_factory.mktemp("e2e")
    write_overlay(base / "tiny.yaml", TINY)
    return checkout_beside_shared(base)


def test_snakemake_runs_the_whole_dag(project):
    """Issue 32: the README's offline Snakemake line, verbatim, with this study's overlay."""
    run(["bash", "-c", readme_line_with("Snakemake", project.parent / "tiny.yaml")], project)
    counts = json.loads((project / "reports/data/counts.json").read_text())
    assert counts["train"]["total"] == 400 and counts["test"]["total"] == 200
    for run_name in ("categorical_crossentropy-seed0", "hinge-seed1"):
        metrics = json.loads((project / f"reports/metrics/{run_name}.json").read_text())
        assert 0.0 <= metrics["test_accuracy"] <= 1.0
        assert metrics["epochs_completed"] == 2
    tuning = json.loads((project / "reports/tune/hinge.json").read_text())
    assert tuning["selected_learning_rate"] == 0.03 and len(tuning["runs"]) == 1
    run_info = json.loads((project / "reports/training/hinge-seed1/run.json").read_text())
    assert run_info["learning_rate"] == 0.03
    report = (project / "reports/report.md").read_text()
    assert "categorical_crossentropy" in report and "hinge" in report
    assert any((project / "reports/figures").glob("*.png"))
    # Issue 19: no TensorFlow start-up noise in any job's log, and the first training of each
    # job (a tuning run here) states the whole study's projected cost.
    from lossbench.pipeline.native_logs import is_noise

    for log in (project / "reports/logs").rglob("*.log"):
        noise = [line for line in log.read_bytes().splitlines() if is_noise(line)]
        assert noise == [], (log, noise[:3])
    tune_log = (project / "reports/logs/tune/hinge.log").read_text()
    assert ("The whole study is projected to train for " in tune_log
            and "2 tuning runs (2 losses x 1 rate x 1 seed, 1 epoch) x " in tune_log
            and " + 4 training runs (2 losses x 2 seeds, 2 epochs) x " in tune_log), tune_log


def test_dvc_commit_records_the_snakemake_run(project):
    run(["dvc", "commit", "--force"], project)
    status = run(["dvc", "status"], project).stdout
    assert "up to date" in status.lower(), status
    # DVC's hardlinked cache keeps the outputs' modification times, so Snakemake too still
    # finds everything up to date after the commit.
    dry_run = run(["snakemake", "--dry-run", "--cores", "1"], project)
    assert "Nothing to be done" in dry_run.stdout + dry_run.stderr, dry_run.stdout[-3000:]
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "tiny study"], project)


def test_only_code_that_decides_a_result_reruns_a_stage(project):
    """Issue 21: a version bump, a comment in params.py and a blank line in every file that no
    stage of the study runs (issue 29: the benchmark's modules, pipeline/, cli.py, ...) leave
    both tools with nothing to do; a blank line in tune.py reruns the tuning, not the training
    (training never runs tune.py); an edit to the losses reruns the training under both. The
    files are then restored, with their modification times, for the tests after this one."""
    from lossbench.pipeline.sources import code_dependencies
    from lossbench.pipeline.stages import STAGES

    package = project / "workflow" / "lossbench"
    run_by_a_stage = {path for entry in STAGES if entry.dvc_file == "dvc.yaml"
                      for path in code_dependencies(entry.name)}
    run_by_none = sorted(path for path in package.rglob("*.py") if "__pycache__" not in path.parts
                         and str(path.relative_to(project)) not in run_by_a_stage)
    assert package / "bench.py" in run_by_none and package / "pipeline" / "stages.py" in run_by_none
    edited = [package / "__init__.py", package / "pipeline" / "params.py", package / "core" / "losses.py",
              package / "train" / "tune.py", *run_by_none]
    times = {path: path.stat().st_mtime_ns for path in edited}
    try:
        with edited[0].open("a") as init:
            init.write('__version__ = "0.1.1"\n')
        with edited[1].open("a") as params:
            params.write("# A comment decides no result.\n")
        for module_path in run_by_none:
            with module_path.open("a") as module:
                module.write("\n")
        assert "up to date" in run(["dvc", "status"], project).stdout.lower()
        dry_run = run(["snakemake", "--dry-run", "--cores", "1"], project)
        assert "Nothing to be done" in dry_run.stdout + dry_run.stderr, dry_run.stdout[-3000:]

        with edited[3].open("a") as tune:
            tune.write("\n")
        tunings = {f"tune@{loss}" for loss in ("categorical_crossentropy", "hinge")}
        assert set(json.loads(run(["dvc", "status", "--json"], project).stdout)) - {GATE_STAGE} == tunings
        # Snakemake reruns the tuning for tune.py; the trainings only wait for its result
        # (Snakemake cannot stop at an unchanged output as DVC does: README).
        edited_tune = r"Updated input files: .*train/tune\.py"
        dry_run = run(["snakemake", "--dry-run", "--cores", "1"], project)
        assert snakemake_changed_stages(project, edited_tune, dry_run.stdout + dry_run.stderr) == {"tune"}

        with edited[2].open("a") as losses:
            losses.write("# An edit to the losses.\n")
        trainings = {f"train@{loss}-{seed}" for loss in ("categorical_crossentropy", "hinge")
                     for seed in (0, 1)}
        # Snakemake names one reason a job: the tuning jobs give the edited file, the trainings
        # the tuning result they wait for.
        dry_run = run(["snakemake", "--dry-run", "--cores", "1"], project)
        output = dry_run.stdout + dry_run.stderr
        edited_losses = r"Updated input files: .*core/losses\.py"
        assert "tune" in snakemake_changed_stages(project, edited_losses, output)
        assert trainings <= snakemake_changed_stages(project, r"\n    reason: ", output)
        assert trainings <= dvc_changed_stages(project, "workflow/lossbench/core/losses.py")
    finally:
        run(["git", "checkout", "--", *(str(path.relative_to(project)) for path in edited)], project)
        for path, mtime in times.items():
            os.utime(path, ns=(mtime, mtime))
    assert "up to date" in run(["dvc", "status"], project).stdout.lower()


def test_a_parameter_edit_reruns_the_same_stages_under_both_tools(project):
    set_params(project, **{"preprocess.train_size": 300})
    assert snakemake_changed_stages(project) == dvc_changed_stages(project) == {"preprocess"}
    set_params(project, **{"preprocess.train_size": 400, "train.learning_rate": 0.02})
    expected = {f"train@{loss}-{seed}" for loss in ("categorical_crossentropy", "hinge") for seed in (0, 1)}
    # The report states the learning rate, so it reads the key: DVC names it among the stages
    # whose params changed; Snakemake reruns it anyway, giving the retrained runs as its reason.
    assert snakemake_changed_stages(project) == expected
    assert dvc_changed_stages(project) == expected | {"report"}
    set_params(project, **{"train.learning_rate": "tuned"})
    assert dvc_changed_stages(project) == set()


def test_what_an_unchanged_output_saves_differs_between_the_tools_as_the_readme_says(project):
    """Issue 31, item 8, the probe: a new `download.max_archive_bytes` (a limit that changes no
    output) makes DVC rerun download and preprocess and stop there, as their outputs come out
    equal, while Snakemake plans every job after them again. It cannot be helped (DVC compares
    outputs by content, Snakemake by time, and plans the whole run before any job runs); the
    README says so, and this checks that what it says is what the tools do."""
    limit = load_params(project / "params.yaml")["download"]["max_archive_bytes"]
    set_params(project, **{"download.max_archive_bytes": limit + 1})
    try:
        assert dvc_changed_stages(project) == {"download", "preprocess"}
        result = run(["snakemake", "--dry-run", "--cores", "1"], project)
        output = result.stdout + result.stderr
        # Snakemake gives one reason a job: download's params, then each job's updated input.
        assert snakemake_changed_stages(project, output=output) == {"download"}
        runs = {f"{loss}-{seed}" for loss in TINY["train.losses"] for seed in TINY["train.seeds"]}
        planned = snakemake_changed_stages(project, r"\n    reason: ", output=output)
        assert {f"train@{name}" for name in runs} | {f"evaluate@{name}" for name in runs} <= planned
        assert {"download", "preprocess", "tune", "compare", "figures", "report"} <= planned
    finally:
        set_params(project, **{"download.max_archive_bytes": limit})
    assert dvc_changed_stages(project) == set()
    readme = " ".join((PROJECT / "README.md").read_text().split())
    assert ("DVC compares outputs by content, so a rerun whose output is unchanged stops its cascade "
            "there; Snakemake compares times, so it reruns everything after a job it reruns.") in readme


def test_the_readme_offline_command_runs_and_review_shows_what_it_changed(project):
    """Issues 19 and 32: the README's offline DVC line, verbatim, with this study's overlay
    and one more epoch appended, reruns the DAG; the review commands show what it changed."""
    three = write_overlay(project.parent / "three-epochs.yaml", {"train.epochs": 3})
    run(["bash", "-c", readme_line_with("DVC", project.parent / "tiny.yaml", three)], project)
    assert "up to date" in run(["dvc", "status"], project).stdout.lower()
    counts = json.loads((project / "reports/data/counts.json").read_text())
    assert counts["train"]["total"] == 400 and counts["test"]["total"] == 200
    metrics_diff = run(["dvc", "metrics", "diff", "--json"], project).stdout
    assert set(json.loads(metrics_diff)) <= {"reports/headline.json"}, metrics_diff
    per_run = run(["dvc", "metrics", "diff", "--json", "--targets", "reports/metrics"], project).stdout
    changed = json.loads(per_run)
    assert changed and all(path.startswith("reports/metrics/") for path in changed), per_run
    assert {entry["epochs_completed"]["new"] for entry in changed.values()} == {3}, per_run
    params_diff = json.loads(run(["dvc", "params", "diff", "--json"], project).stdout)
    epochs = params_diff["params.yaml"]["train.epochs"]
    assert (epochs["old"], epochs["new"]) == (2, 3)
    plots = run(["dvc", "plots", "diff", "--json"], project).stdout
    assert "val/accuracy" in plots or "accuracy" in plots


def test_snakemake_sees_what_dvc_made_with_other_values_and_what_was_deleted(project):
    """Issue 31, items 0 and 4. DVC made these outputs (the offline line above) and Snakemake
    holds no record of them (its metadata removed, as in the probe): after an edit of
    model.width, `snakemake -n` said "Nothing to be done" while `dvc status` listed the change.
    Each output's record (lossbench.pipeline.made) now makes Snakemake plan the same jobs as
    DVC; and a deleted model is made again (with what it feeds), not taken as done."""
    import shutil

    shutil.rmtree(project / ".snakemake" / "metadata", ignore_errors=True)
    trainings = {f"train@{loss}-{seed}" for loss in ("categorical_crossentropy", "hinge") for seed in (0, 1)}
    tunings = {"tune@categorical_crossentropy", "tune@hinge"}

    def planned() -> tuple[set[str], str]:
        dry_run = run(["snakemake", "--dry-run", "--cores", "1"], project)
        output = dry_run.stdout + dry_run.stderr
        return snakemake_changed_stages(project, r"\n    reason: ", output), output

    jobs, output = planned()
    assert not jobs & (trainings | {"tune", "evaluate@hinge-1"}), output[-3000:]
    set_params(project, **{"model.width": 0.15})
    try:
        jobs, output = planned()
        assert trainings | {"tune"} <= jobs, output[-3000:]  # the helper names tune jobs "tune"
        for run_name in ("categorical_crossentropy-seed0", "hinge-seed1"):
            assert (f"lossbench: data/models/{run_name}.keras will be made again: it was made with "
                    "other values of model.width.") in output, output[-3000:]
        assert trainings | tunings <= dvc_changed_stages(project)
    finally:
        set_params(project, **{"model.width": 0.1})
    model = project / "data/models/hinge-seed1.keras"
    saved, times = model.read_bytes(), model.stat()
    model.unlink()
    try:
        jobs, output = planned()
        assert {"train@hinge-1", "evaluate@hinge-1"} <= jobs, output[-3000:]
        assert ("reports/evaluation/hinge-seed1.json will be made again: "
                "data/models/hinge-seed1.keras, which it was made from, is missing") in output
        assert "train@hinge-1" in json.loads(run(["dvc", "status", "--json"], project).stdout)
    finally:
        model.write_bytes(saved)
        os.utime(model, ns=(times.st_atime_ns, times.st_mtime_ns))


def test_a_run_killed_with_sigkill_is_planned_again_and_leaves_nothing_behind(project):
    """Issue 31, item 4: `kill -9` of a whole Snakemake run (its process group, Snakemake and
    the job, as the OOM killer or a lost node would) while figures draws under --forcerun.
    Before: the next `snakemake -n` said "Nothing to be done" and reports/.figures.*.tmp stayed
    for good. Now the dry run plans figures again, and the next run leaves no staging
    directory and nothing to do."""
    import signal
    import subprocess
    import time

    from projects import environment

    staging = lambda: list((project / "reports").glob(".figures.*.tmp"))  # noqa: E731
    with (project / "killed.out").open("w") as handle:
        snakemake = subprocess.Popen(["snakemake", "--cores", "1", "--forcerun", "figures"], cwd=project,
                                     env=environment(), stdout=handle, stderr=subprocess.STDOUT,
                                     start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not staging():
            assert snakemake.poll() is None, (project / "killed.out").read_text()[-3000:]
            assert time.monotonic() < deadline, "figures never started"
            time.sleep(0.05)
        os.killpg(snakemake.pid, signal.SIGKILL)
        snakemake.wait(timeout=60)
    finally:
        if snakemake.poll() is None:
            os.killpg(snakemake.pid, signal.SIGKILL)
    assert staging()  # what the killed job left
    # The plain dry run plans figures, or names --rerun-incomplete; never "Nothing to be done".
    dry_run = run(["snakemake", "--dry-run", "--cores", "1"], project, check=False)
    output = dry_run.stdout + dry_run.stderr
    assert "Nothing to be done" not in output, output[-3000:]
    assert re.search(r"^(local)?rule figures:", output, re.M) or "--rerun-incomplete" in output, output[-3000:]
    dry_run = run(["snakemake", "--dry-run", "--cores", "1", "--rerun-incomplete"], project)
    output = dry_run.stdout + dry_run.stderr
    assert re.search(r"^(local)?rule figures:", output, re.M), output[-3000:]
    # As the README says after a kill -9: unlock once (the killed run's lock stays), then rerun.
    refused = run(["snakemake", "--cores", "1", "--rerun-incomplete"], project, check=False)
    assert refused.returncode != 0 and "--unlock" in refused.stdout + refused.stderr
    run(["snakemake", "--unlock"], project)
    run(["snakemake", "--cores", "1", "--rerun-incomplete"], project)
    assert not staging()
    dry_run = run(["snakemake", "--dry-run", "--cores", "1"], project)
    assert "Nothing to be done" in dry_run.stdout + dry_run.stderr
    # Snakemake remade the figures and the report: DVC's record follows, as after any
    # Snakemake run (README), for the tests after this one.
    run(["dvc", "commit", "-f", "-q"], project)


def test_a_bad_value_is_refused_before_dvc_deletes_any_output(project):
    """Issue 32: `dvc exp run -S train.epochs=three` used to delete reports/tune/*.json before
    the tune stage refused the value. dvc.yaml's first stage, validate, now refuses it first:
    every output stays, byte for byte, and so do params.yaml's other values."""
    import hashlib

    import yaml

    outputs = [path for folder in ("reports", "data/models", "data/prepared")
               for path in (project / folder).rglob("*")
               if path.is_file() and "logs" not in path.parts and not path.name.startswith(".")]
    assert any(path.parent.name == "tune" for path in outputs)

    def contents() -> dict[Path, str]:
        # Their bytes, not their times: `dvc exp run` relinks outputs from its cache as it starts.
        return {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in outputs if path.is_file()}

    before_run = contents()
    text = (project / "params.yaml").read_text()
    result = run(["dvc", "exp", "run", "-S", "train.epochs=three"], project, check=False)
    output = result.stdout + result.stderr
    try:
        assert result.returncode != 0, output[-3000:]
        assert "train.epochs" in output and "lossbench validate" in output, output[-3000:]
        assert contents() == before_run
        before, after = yaml.safe_load(text), yaml.safe_load((project / "params.yaml").read_text())
        assert after["train"].pop("epochs") == "three" and before["train"].pop("epochs") == 3
        assert after == before
    finally:
        (project / "params.yaml").write_text(text)


def test_packed_train_jobs_write_what_lone_ones_write_under_both_tools(project):
    """Issue 28: with train.pack_size 2 on the JAX backend, Snakemake's and DVC's train jobs
    (one per run, unchanged) train each loss's seeds 0 and 1 as one pack: the first job of a
    pack trains both, the second takes its finished result; every run writes the files it
    wrote alone (TensorFlow, above)."""
    def files(run_dir: Path) -> list[str]:
        # Not Snakemake's own marker of a directory output (.snakemake_timestamp).
        return sorted(path.name for path in run_dir.iterdir() if not path.name.startswith("."))

    alone = {run_dir.name: files(run_dir) for run_dir in (project / "reports/training").iterdir()}
    assert len(alone) == 4
    set_params(project, **{"train.pack_size": 2})
    run(["snakemake", "--cores", "1", "--resources", "gpu=1", "--until", "train"], project,
        KERAS_BACKEND="jax")
    for loss in ("categorical_crossentropy", "hinge"):
        logs = [(project / f"reports/logs/train/{loss}-seed{seed}.log").read_text() for seed in (0, 1)]
        assert sum("a pack of 2 runs (seeds 0, 1)" in log for log in logs) == 1, logs
        assert sum("trained in its pack by another job" in log for log in logs) == 1, logs
    for name, names in alone.items():
        assert files(project / "reports/training" / name) == names
        run_info = json.loads((project / "reports/training" / name / "run.json").read_text())
        assert (run_info["backend"], run_info["pack_size"]) == ("jax", 2)
        assert (project / "data/models" / f"{name}.keras").is_file()
    assert not list((project / "data/checkpoints").glob("*/finished"))

    # DVC: one epoch fewer, so that both runs of the pack are out of date; a job trains only
    # the runs of its pack that have no current output.
    set_params(project, **{"train.epochs": 2})
    done = run(["dvc", "repro", "--single-item", "train@hinge-1", "train@hinge-0"], project,
               KERAS_BACKEND="jax")
    output = done.stdout + done.stderr
    assert output.count("a pack of 2 runs (seeds 0, 1)") == 1, output[-3000:]
    assert output.count("trained in its pack by another job") == 1, output[-3000:]
    for name in ("hinge-seed0", "hinge-seed1"):
        assert files(project / "reports/training" / name) == alone[name]

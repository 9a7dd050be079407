"""End to end on real CIFAR-10 images: Snakemake runs the DAG, DVC records and reruns it.

In a temporary git repository holding a copy of the project, with `download.source` pointing at
../shared/data/cifar10-jpeg.tar.gz (small stratified subsets, a narrow model, two epochs):

1. `snakemake --cores 1 --resources gpu=1` runs the whole DAG to the report;
2. `dvc commit` records those outputs, after which `dvc status` finds nothing to do;
3. code that decides no result (a version bump, a comment in params.py) leaves both tools
   with nothing to do, and an edit to the losses makes both want the training again;
4. editing a parameter makes both tools want the same stages (a Snakemake dry run's reasons
   and `dvc status`), for a data parameter and for a training parameter;
5. the README's offline command (`dvc exp run` with the local copy's settings and the
   CPU-sized sizes), verbatim, with this study's smaller sizes and one more epoch appended,
   reruns the DAG from the copy beside the checkout, and the review commands (`dvc metrics
   diff`, `dvc params diff`, `dvc plots diff`) show what the change did.
"""

import json
import os
import re
from pathlib import Path

import pytest

from projects import (
    SHARED_ARCHIVE, copy_project, init_repository, needs_real_images, run, set_params,
)
from test_readme import readme_offline_command

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
    return {
        stage for stage, changes in status.items()
        if any("changed deps" in change and any(key.endswith(dependency) for key in change["changed deps"])
               for change in changes if isinstance(change, dict))
    }


# The tiny study of these tests, as `-S` settings appended to the README's offline command.
TINY_SETTINGS = (
    "-S preprocess.train_size=400 -S preprocess.test_size=200 -S model.width=0.1 "
    "-S 'train.losses=[categorical_crossentropy,hinge]' -S 'train.seeds=[0,1]' "
    "-S 'tune.learning_rates=[0.03]' -S train.epochs=3"
)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    # A checkout with the shared data beside it, as the README's offline command expects.
    base = tmp_path_factory.mktemp("e2e")
    (base / "shared").symlink_to(SHARED_ARCHIVE.parent.parent)
    (base / "lossbench").mkdir()
    root = copy_project(
        base / "lossbench",
        **{
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
        },
    )
    init_repository(root)
    return root


def test_snakemake_runs_the_whole_dag(project):
    run(["snakemake", "--cores", "1", "--resources", "gpu=1"], project)
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
    """Issue 21: a version bump and a comment in params.py leave both tools with nothing to
    do; an edit to the losses reruns the training under both. The files are then restored,
    with their modification times, for the tests after this one."""
    package = project / "workflow" / "lossbench"
    edited = [package / "__init__.py", package / "pipeline" / "params.py", package / "core" / "losses.py"]
    times = {path: path.stat().st_mtime_ns for path in edited}
    try:
        with edited[0].open("a") as init:
            init.write('__version__ = "0.1.1"\n')
        with edited[1].open("a") as params:
            params.write("# A comment decides no result.\n")
        assert "up to date" in run(["dvc", "status"], project).stdout.lower()
        dry_run = run(["snakemake", "--dry-run", "--cores", "1"], project)
        assert "Nothing to be done" in dry_run.stdout + dry_run.stderr, dry_run.stdout[-3000:]

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


def test_the_readme_offline_command_runs_and_review_shows_what_it_changed(project):
    """Issue 19: the README's offline command, verbatim, with this study's sizes appended
    (the README: "where a key is given twice, the last value counts")."""
    command = readme_offline_command()
    assert command.startswith("dvc exp run -S download.source=../shared/data/cifar10-jpeg.tar.gz")
    run(["bash", "-c", f"{command} {TINY_SETTINGS}"], project)
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
    source = params_diff["params.yaml"]["download.source"]
    assert (source["old"], source["new"]) == (str(SHARED_ARCHIVE), "../shared/data/cifar10-jpeg.tar.gz")
    plots = run(["dvc", "plots", "diff", "--json"], project).stdout
    assert "val/accuracy" in plots or "accuracy" in plots


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

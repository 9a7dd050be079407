"""Scale-out: the study through Snakemake's SLURM executor, and parameter sweeps through DVC.

1. Against a real one-node SLURM cluster (tests/slurm/start-slurm.sh: slurmctld + slurmd on
   this machine, with one fake GPU), a tiny study (two losses, one seed, one epoch, a few
   hundred real CIFAR-10 images) runs end to end with
   `snakemake --workflow-profile workflow/profiles/slurm`. Each training job must have gone
   through sbatch as its own SLURM job holding one GPU (`scontrol show job`: TresPerJob
   gres:gpu:1), its per-job SLURM log must be kept, the metrics must land in reports/ as in a
   local run, and `dvc commit` must then record them (`dvc status` up to date).

   The test starts the cluster itself (tests/slurm/start-slurm.sh) when SLURM is installed, or
   when `CI` or `LOSSBENCH_SLURM_TEST=1` is set (the script then installs slurm-wlm and munge
   with apt, which needs root or passwordless sudo). It is skipped, with the reason, when SLURM
   is neither installed nor allowed to be installed, when it cannot be installed, or when this
   machine already has a SLURM configuration that start-slurm.sh did not write (a real
   cluster's: the test never touches one).

2. `dvc exp run --queue` + `dvc queue start -j 1`, the documented way to sweep a parameter
   through DVC: two queued experiments (two learning rates) both finish and both show their
   metrics in `dvc exp show --json`.
"""

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from projects import (
    PROJECT,
    SLURM_STARTED,
    copy_project,
    environment,
    init_repository,
    needs_real_images,
    run,
    session_process,
)

START_SLURM = PROJECT / "tests" / "slurm" / "start-slurm.sh"
LOSSES = ["categorical_crossentropy", "hinge"]
RUNS = [f"{loss}-seed0" for loss in LOSSES]
# Outer limits (seconds): the tiny study takes about 2 minutes through SLURM on 2 cores.
SLURM_INSTALL_TIMEOUT = 600
SLURM_RUN_TIMEOUT = 900
QUEUE_TIMEOUT = 900

pytestmark = [pytest.mark.slow, needs_real_images]


def make_tiny_project(root: Path, **extra) -> Path:
    """A copy of the project whose params.yaml describes a study of a minute or two."""
    return copy_project(
        root,
        **{
            "preprocess.train_size": 200,
            "preprocess.test_size": 100,
            "model.width": 0.1,
            "train.losses": LOSSES,
            "train.seeds": [0],
            "train.epochs": 1,
            **extra,
        },
    )


# ------------------------------------------------------------------------------------------
# 1. SLURM


SBIN_PATH = f"{os.environ.get('PATH', '')}:/usr/local/sbin:/usr/sbin:/sbin"


def slurm_installed() -> bool:
    return all(shutil.which(tool, path=SBIN_PATH)
               for tool in ("sbatch", "squeue", "scontrol", "slurmctld", "slurmd"))


def slurmctld_running() -> bool:
    return subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def slurm_cluster(request):
    """Start (and, where allowed, install) the one-node test cluster; skip where impossible.
    A cluster this fixture started is stopped when the whole session ends (conftest.py's
    pytest_sessionfinish, so that the other tests' Snakemake calls never wait on a SLURM
    controller that is gone); one already running is left alone."""
    allowed = bool(os.environ.get("CI")) or os.environ.get("LOSSBENCH_SLURM_TEST") == "1"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        message = ("Snakemake's SLURM executor is not installed: install the slurm extra too, as "
                   "the README's test command does (pip install -e \".[test,slurm]\")")
        if allowed:
            pytest.fail(message)
        pytest.skip(message)
    if not slurm_installed() and not allowed:
        pytest.skip("SLURM is not installed here; set LOSSBENCH_SLURM_TEST=1 (CI sets CI) to let "
                    "tests/slurm/start-slurm.sh install slurm-wlm and munge with apt (root or "
                    "passwordless sudo) and start a one-node cluster")
    was_running = slurmctld_running()
    try:
        result = subprocess.run(["bash", str(START_SLURM)], capture_output=True, text=True,
                                timeout=SLURM_INSTALL_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{START_SLURM} did not finish in {SLURM_INSTALL_TIMEOUT} s")
    output = result.stdout + result.stderr
    if result.returncode == 2:  # cannot install, or a configuration that is not ours
        pytest.skip(f"no test SLURM cluster: {output.strip()[-600:]}")
    assert result.returncode == 0, f"{START_SLURM} failed:\n{output[-4000:]}"
    if not was_running:
        request.config.cache.set(SLURM_STARTED, session_process(request.config))
    return output


def run_with_timeout(command, cwd, timeout):
    """Run `command`; past `timeout`, interrupt it (Snakemake then cancels its SLURM jobs)."""
    with subprocess.Popen(command, cwd=cwd, env=environment(), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
            try:
                output, _ = process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                output, _ = process.communicate()
            raise AssertionError(f"{command} did not finish in {timeout} s:\n{output[-6000:]}")
    return process.returncode, output


def submitted_jobs(output: str) -> dict[str, list[str]]:
    """SLURM job ids by rule, from Snakemake's 'Job N has been submitted with SLURM jobid J
    (log: .../slurm_logs/rule_<rule>/...)' lines."""
    jobs: dict[str, list[str]] = {}
    for slurm_id, log in re.findall(r"submitted with SLURM jobid (\d+) \(log: (\S+?)\)", output):
        rule = re.search(r"/rule_([A-Za-z0-9_]+)/", log).group(1)
        jobs.setdefault(rule, []).append(slurm_id)
    return jobs


def show_job(slurm_id: str) -> dict[str, str]:
    text = subprocess.run(["scontrol", "show", "job", "--oneliner", slurm_id], capture_output=True,
                          text=True, check=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", text))


@pytest.fixture(scope="module")
def slurm_study(slurm_cluster, tmp_path_factory):
    root = make_tiny_project(tmp_path_factory.mktemp("lossbench-slurm"))
    started = time.monotonic()
    returncode, output = run_with_timeout(
        [
            "snakemake", "--workflow-profile", "workflow/profiles/slurm",
            # The test cluster has no accounting storage, so `sacct` cannot answer: poll with
            # squeue (finished jobs stay visible for MinJobAge = 1 h), and soon.
            "--slurm-status-command", "squeue",
            "--slurm-init-seconds-before-status-checks", "2",
        ],
        root, SLURM_RUN_TIMEOUT,
    )
    elapsed = time.monotonic() - started
    assert returncode == 0, f"snakemake through SLURM failed:\n{output[-8000:]}"
    return root, output, elapsed


def test_the_study_runs_through_slurm(slurm_study, capsys):
    root, output, elapsed = slurm_study
    for run_name in RUNS:
        metrics = json.loads((root / f"reports/metrics/{run_name}.json").read_text())
        assert 0.0 <= metrics["test_accuracy"] <= 1.0
        assert metrics["epochs_completed"] == 1
    assert json.loads((root / "reports/data/counts.json").read_text())["train"]["total"] == 200
    report = (root / "reports/report.md").read_text()
    assert all(loss in report for loss in LOSSES)
    with capsys.disabled():
        print(f"\ntiny study through the SLURM profile: {elapsed:.0f} s")


def test_each_training_is_a_slurm_job_holding_a_gpu(slurm_study, capsys):
    root, output, _ = slurm_study
    jobs = submitted_jobs(output)
    assert len(jobs.get("train", [])) == len(RUNS), f"training jobs submitted: {jobs}\n{output[-4000:]}"
    trained = set()
    for slurm_id in jobs["train"]:
        job = show_job(slurm_id)
        assert job["JobState"] == "COMPLETED", job
        # sbatch --gpus=1 (SLURM 22.05 writes gres:gpu:1, later versions gres/gpu:1).
        assert re.fullmatch(r"gres[:/]gpu:1", job.get("TresPerJob", "")), job
        assert Path(job["WorkDir"]).resolve() == root.resolve()
        # The plugin's comment names the rule and the job's wildcards (loss, seed).
        trained.add(re.fullmatch(r"rule_train_wildcards_([a-z_]+)_0", job["Comment"]).group(1))
        # One SLURM log per job, kept although the job succeeded.
        log = Path(job["StdOut"])
        assert log.is_file() and root.resolve() in log.resolve().parents, job
        assert "rule train" in log.read_text() or "localrule train" in log.read_text()
    assert trained == set(LOSSES)
    # Shown in CI's log (outside pytest's capture), as evidence that the jobs went through sbatch.
    with capsys.disabled():
        for slurm_id in jobs["train"]:
            job = show_job(slurm_id)
            print(f"\nSLURM job {slurm_id} (sbatch): {job['Comment']}, "
                  f"TresPerJob={job.get('TresPerJob')}, JobState={job['JobState']}")
    # No other job asks for a GPU (tune trains too, at every rate of tune.learning_rates).
    for rule, ids in jobs.items():
        if rule not in ("train", "tune"):
            for slurm_id in ids:
                assert "gpu" not in show_job(slurm_id).get("TresPerJob", ""), rule


def test_dvc_records_the_cluster_run(slurm_study):
    root, _, _ = slurm_study
    init_repository(root)
    run(["dvc", "commit", "--force"], root)
    status = run(["dvc", "status"], root).stdout
    assert "up to date" in status.lower(), status
    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], root).stdout)
    assert any("reports/headline.json" in json.dumps(value) for value in metrics.values()), metrics


# ------------------------------------------------------------------------------------------
# 2. DVC experiment queue


def test_dvc_queue_runs_queued_experiments(tmp_path):
    root = make_tiny_project(tmp_path, **{"train.losses": ["categorical_crossentropy"]})
    init_repository(root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "tiny study"], root)
    rates = {"lr-high": 0.02, "lr-low": 0.005}
    for name, rate in rates.items():
        run(["dvc", "exp", "run", "--queue", "--name", name, "-S", f"train.learning_rate={rate}"], root)
    run(["dvc", "queue", "start", "-j", "1"], root)
    deadline = time.monotonic() + QUEUE_TIMEOUT
    try:
        while True:
            status = run(["dvc", "queue", "status"], root).stdout
            if not re.search(r"\b(Queued|Running)\b", status):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"the DVC queue did not finish in {QUEUE_TIMEOUT} s:\n{status}")
            time.sleep(5)
    finally:
        run(["dvc", "queue", "stop", "--kill"], root, check=False)
    assert status.count("Success") == len(rates), (
        status + run(["dvc", "queue", "logs", "lr-high"], root, check=False).stdout[-3000:])

    experiments = json.loads(run(["dvc", "exp", "show", "--json"], root).stdout)
    found = {}
    for baseline in experiments:
        for experiment in baseline.get("experiments") or []:
            for revision in experiment.get("revs", []):
                data = revision.get("data") or {}
                name = revision.get("name") or data.get("name")
                if name not in rates:
                    continue
                rate = data["params"]["params.yaml"]["data"]["train"]["learning_rate"]
                metrics = data["metrics"]["reports/headline.json"]["data"]
                found[name] = (rate, metrics)
    assert set(found) == set(rates), json.dumps(experiments)[:3000]
    for name, (rate, metrics) in found.items():
        assert rate == rates[name]
        # The headline: the loss's mean test accuracy, under its name.
        assert 0.0 <= metrics["categorical_crossentropy"] <= 1.0

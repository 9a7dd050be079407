"""Snakemake and DVC take turns: started while the other runs, either stops at once.

In a throwaway git + DVC copy of the project on real images (200/100 images, width 0.1, one
loss, one seed, one epoch), one orchestrator runs the study while the other is started: the
second must stop before it deletes or writes anything (Snakemake with a message naming DVC;
DVC with its own "Unable to acquire lock", which cannot name Snakemake), and the first must
finish cleanly (workflow/lossbench/pipeline/orchestration.py). The same copy checks that an
edit to params.yaml during a Snakemake run stops the remaining jobs. The last two tests check the
mechanism alone in seconds, on a DVC repository of one stage: `dvc repro`, `dvc checkout`
and `dvc pull` are all refused while the hold lasts.
"""

import json
import subprocess
import time
from pathlib import Path

import pytest

from projects import (
    copy_project,
    environment,
    init_repository,
    needs_real_images,
    run,
    set_params,
)

TINY = {
    "preprocess.train_size": 200,
    "preprocess.test_size": 100,
    "model.width": 0.1,
    "train.losses": ["categorical_crossentropy"],
    "train.seeds": [0],
    "train.epochs": 1,
}


# DVC's own message when its repo lock is held (it cannot name the holder).
DVC_LOCKED = "Unable to acquire lock"


def start(command, root: Path) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=root, env=environment(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def rwlock(root: Path) -> dict:
    try:
        return json.loads((root / ".dvc" / "tmp" / "rwlock").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def wait_for(condition, first: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if first.poll() is not None:
            raise AssertionError(f"the first tool ended before {what}:\n{first.stdout.read()[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.1)


@pytest.fixture
def project(tmp_path):
    root = copy_project(tmp_path, **TINY)
    init_repository(root)
    return root


@pytest.mark.slow
@needs_real_images
def test_dvc_stops_at_once_while_snakemake_runs(project):
    snakemake = start(["snakemake", "--cores", "1", "--resources", "gpu=1"], project)
    wait_for(lambda: "Snakemake is running" in json.dumps(rwlock(project)), snakemake,
             "Snakemake registered in DVC's lock file")

    dvc = run(["dvc", "repro"], project, check=False, timeout=120)

    assert dvc.returncode != 0
    assert snakemake.poll() is None, "DVC was not stopped while Snakemake was still running"
    message = dvc.stdout + dvc.stderr
    # DVC stops at Snakemake's hold on its repo lock, with its own message; DVC's rwlock
    # names Snakemake for whoever looks.
    assert DVC_LOCKED in message, message
    assert "must not run at once" in json.dumps(rwlock(project))
    output = snakemake.communicate(timeout=900)[0]
    assert snakemake.returncode == 0, output[-4000:]
    assert (project / "reports" / "report.md").is_file()
    assert "Snakemake" not in json.dumps(rwlock(project))
    run(["dvc", "commit", "--force"], project)  # DVC works again once Snakemake is done.


@pytest.mark.slow
@needs_real_images
def test_snakemake_stops_at_once_while_dvc_runs(project):
    dvc = start(["dvc", "repro"], project)
    wait_for(lambda: (project / "data" / "raw" / "archive").is_file(), dvc, "DVC ran a stage")

    snakemake = run(["snakemake", "--cores", "1", "--resources", "gpu=1"], project, check=False,
                    timeout=120)

    assert snakemake.returncode != 0
    assert dvc.poll() is None, "Snakemake was not stopped while DVC was still running"
    message = snakemake.stdout + snakemake.stderr
    assert "DVC is running" in message and "must not run at once" in message, message
    output = dvc.communicate(timeout=900)[0]
    assert dvc.returncode == 0, output[-4000:]
    assert (project / "reports" / "report.md").is_file()
    # Snakemake left no lock of its own behind: it runs once DVC is done.
    run(["snakemake", "--cores", "1", "--resources", "gpu=1"], project)


@pytest.mark.slow
@needs_real_images
def test_editing_params_while_snakemake_runs_stops_the_remaining_jobs(project):
    """Jobs read params.yaml when they start: an edit mid-run must not reach them silently."""
    snakemake = start(["snakemake", "--cores", "1", "--resources", "gpu=1"], project)
    wait_for(lambda: (project / "data" / "raw" / "archive").is_file(), snakemake,
             "Snakemake ran its first job")
    set_params(project, **{"train.epochs": 2})

    output = snakemake.communicate(timeout=900)[0]

    assert snakemake.returncode != 0
    assert "params.yaml has changed since Snakemake built its DAG from it" in output, output[-4000:]
    assert not (project / "reports" / "report.md").exists()


def test_the_hold_and_dvc_exclude_each_other(tmp_path):
    """The mechanism alone, in seconds: a DVC repository whose one stage sleeps."""
    from lossbench.pipeline.orchestration import ConcurrentRunError, hold_project, release_project

    for command in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        run(command, tmp_path)
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  slow:\n    cmd: sleep 4 && echo done > out.txt\n    outs:\n      - out.txt\n"
    )
    dvc = start(["dvc", "repro"], tmp_path)
    wait_for(lambda: rwlock(tmp_path).get("write"), dvc, "DVC ran its stage")
    with pytest.raises(ConcurrentRunError, match="DVC is running a stage in this project"):
        hold_project(tmp_path)
    assert dvc.wait(timeout=120) == 0

    hold_project(tmp_path)
    try:
        blocked = run(["dvc", "repro", "--force"], tmp_path, check=False, timeout=120)
        assert blocked.returncode != 0
        assert DVC_LOCKED in blocked.stdout + blocked.stderr
        assert "Snakemake is running lossbench in this project" in json.dumps(rwlock(tmp_path))
    finally:
        release_project()
    assert rwlock(tmp_path).get("write", {}) == {}
    run(["dvc", "status"], tmp_path)


def test_checkout_and_pull_cannot_restore_what_snakemake_deleted(tmp_path):
    """Issue 20, D3: `dvc checkout` during a Snakemake run restored the model Snakemake had
    deleted to retrain it. `dvc checkout` and `dvc pull` do not look at DVC's rwlock, only at
    its repo lock, which the hold now keeps for the whole run."""
    from lossbench.pipeline.orchestration import hold_project, release_project

    for command in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        run(command, tmp_path)
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  make:\n    cmd: echo old model > model.txt\n    outs:\n      - model.txt\n"
    )
    run(["dvc", "repro"], tmp_path)
    remote = tmp_path.parent / f"{tmp_path.name}-remote"
    with (tmp_path / ".dvc" / "config").open("a") as config:  # `dvc remote add -d`, faster
        config.write(f"[core]\n    remote = storage\n['remote \"storage\"']\n    url = {remote}\n")
    run(["dvc", "push"], tmp_path)
    model = tmp_path / "model.txt"

    hold_project(tmp_path)
    try:
        model.unlink()  # what Snakemake does before it reruns the job that makes it
        for command in (["dvc", "checkout"], ["dvc", "pull"]):
            result = run(command, tmp_path, check=False, timeout=120)
            assert result.returncode != 0, command
            assert DVC_LOCKED in result.stdout + result.stderr, command
            assert not model.exists(), f"{command} restored the output during the run"
    finally:
        release_project()
    run(["dvc", "checkout"], tmp_path)  # once the run is over, DVC works as before
    assert model.read_text() == "old model\n"


# ------------------------------------------------------------------------------------------
# Stopping a run: what `kill` does to each tool, and the group kill that stops it at once
# (README, "Stopping a run"). A stage that waits as a training does, in seconds: `lossbench
# download` run as a program (through the noise filter) with its work replaced by a wait.

WAITING_STAGE = (
    "import os, sys, time\n"
    "from lossbench import cli, download\n"
    "def wait(*args, **kwargs):\n"
    "    print('ready', os.getpid(), flush=True)\n"
    "    time.sleep(120)\n"
    "download.run = wait\n"
    "sys.argv = ['lossbench', '--params', 'params.yaml', 'download', '--output', 'out.txt']\n"
    "sys.exit(cli.main())\n"
)
TERMINATED = "lossbench download: terminated (SIGTERM). Run the same command again to finish"


def waiting_stage(root: Path) -> str:
    """Write the waiting stage and params.yaml into `root`; the command that runs it."""
    import shutil
    import sys

    (root / "stage.py").write_text(WAITING_STAGE)
    shutil.copy(Path(__file__).resolve().parent.parent / "params.yaml", root / "params.yaml")
    return f"{sys.executable} stage.py"


def start_in_group(command, root: Path, output: Path) -> subprocess.Popen:
    """`command` in a process group of its own (as a shell's job control starts it)."""
    with output.open("w") as handle:
        return subprocess.Popen(command, cwd=root, env=environment(), stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=True)


def wait_until(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


def stage_pid(path: Path) -> int | None:
    text = path.read_text() if path.exists() else ""
    found = [line.split()[1] for line in text.splitlines() if line.startswith("ready ")]
    return int(found[0]) if found else None


def alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_kill_on_snakemake_waits_for_its_jobs_and_a_group_kill_stops_them(tmp_path):
    import os
    import signal

    from lossbench.pipeline.stages import snakemake_shell

    rule_shell = snakemake_shell("download")
    suffix = rule_shell[rule_shell.index(" 2>&1 "):]  # the rules' own: output to tee and log
    (tmp_path / "Snakefile").write_text(
        f'rule job:\n    output: "out.txt"\n    log: "job.log"\n'
        f'    shell: "{waiting_stage(tmp_path)}{suffix}"\n')
    output = tmp_path / "snakemake.out"
    snakemake = start_in_group(["snakemake", "--cores", "1"], tmp_path, output)
    try:
        wait_until(lambda: stage_pid(tmp_path / "job.log"), "the job started")
        pid = stage_pid(tmp_path / "job.log")
        for count in (1, 2):  # `kill PID`, twice: Snakemake waits for the job
            os.kill(snakemake.pid, signal.SIGTERM)
            # At least one more notice per signal: on a busy machine Snakemake has been seen
            # to print it twice for one signal (its scheduler loop repeats it).
            wait_until(lambda: output.read_text().count(
                "Will exit after finishing currently running jobs") >= count, f"SIGTERM {count}")
            time.sleep(1)
            assert snakemake.poll() is None and alive(pid)
        os.killpg(snakemake.pid, signal.SIGTERM)  # the group: at once
        assert snakemake.wait(timeout=60) != 0
    finally:
        if snakemake.poll() is None:
            os.killpg(snakemake.pid, signal.SIGKILL)
    assert (tmp_path / "job.log").read_text().splitlines()[-1].startswith(TERMINATED)
    assert TERMINATED in output.read_text()
    assert not alive(pid)


def test_kill_on_dvc_orphans_its_stage_and_a_group_kill_stops_it(tmp_path):
    import os
    import signal

    (tmp_path / "dvc.yaml").write_text(
        f"stages:\n  job:\n    cmd: {waiting_stage(tmp_path)}\n    outs: [out.txt]\n")
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        run(command, tmp_path)
    output = tmp_path / "dvc.out"
    dvc = start_in_group(["dvc", "repro"], tmp_path, output)
    try:
        wait_until(lambda: stage_pid(output), "the stage started")
        pid = stage_pid(output)
        os.kill(dvc.pid, signal.SIGTERM)  # `kill PID`: DVC ends, its stage does not
        assert dvc.wait(timeout=60) != 0
        time.sleep(1)
        assert alive(pid)
        os.killpg(dvc.pid, signal.SIGTERM)  # the group (it outlives DVC): the stage ends
        wait_until(lambda: TERMINATED in output.read_text(), "the stage ended", timeout=60)
    finally:
        try:
            os.killpg(dvc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

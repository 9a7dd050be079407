"""Keep Snakemake and DVC from running at the same time in one project.

Both orchestrators delete a stage's outputs before they rerun it, so two of them at work in
one directory destroy each other's inputs (a `dvc repro` once deleted `data/prepared` under a
running Snakemake). They must take turns, and this module makes them:

In: the project directory (Snakemake's working directory), from the Snakefile's `onstart`
hook, which runs in the main Snakemake process just before its first job (not on dry runs).
Out: `hold_project` takes DVC's repo lock, `.dvc/tmp/lock`, for the whole run and registers
that Snakemake process in DVC's lock file, `.dvc/tmp/rwlock`, as writing the whole project,
until `release_project` (the `onsuccess` and `onerror` hooks, and at exit). Every DVC command
that reads or writes the workspace takes the repo lock first, so `dvc repro`, `dvc exp run`,
`dvc status`, `dvc commit`, and also `dvc checkout`, `dvc pull` and `dvc fetch` (which
restore outputs from the cache without looking at `.dvc/tmp/rwlock`: a `dvc checkout`
brought back a model Snakemake had just deleted to retrain it) stop within DVC's 3 seconds
of retrying, before they delete or write anything, with DVC's "Unable to acquire lock. Most
likely another DVC process is running ...". DVC's message cannot name Snakemake; the README
says what it means. If DVC is already at work (it holds its repo lock, or lists a running
stage in `.dvc/tmp/rwlock`), `hold_project` raises `ConcurrentRunError` naming DVC and
Snakemake stops before its first job.

DVC's own locking code (dvc.lock, dvc.rwlock) is used, so the protocol is exactly DVC's: the
repo lock is a file lock (`fcntl`) that the system releases when the process ends, however it
ends, and a killed Snakemake (kill -9) leaves an rwlock entry that the next DVC command
finds dead and removes. (With `core.hardlink_lock`, for file systems without `fcntl` locks,
DVC's lock is a file that a kill -9 leaves behind: delete `.dvc/tmp/lock` then, as DVC's
own documentation says for its own processes.) Outside a DVC repository there is nothing to
guard and nothing is done.
"""

from __future__ import annotations

import atexit
import os
import sys
from contextlib import ExitStack
from pathlib import Path

WHY = "Snakemake and DVC must not run at once in one project"

_held: ExitStack | None = None


class ConcurrentRunError(RuntimeError):
    """The other orchestrator is already running in this project."""


def _dvc_pid(lock_file: Path) -> str:
    """The process id DVC wrote into its repo lock file (zc.lockfile writes ' <pid>\\n')."""
    try:
        pid = lock_file.read_text().strip()
    except OSError:
        return ""
    return f" (PID {pid})" if pid.isdigit() else ""


def hold_project(directory: str | os.PathLike = ".") -> None:
    """Register this Snakemake run in DVC's lock file, or raise ConcurrentRunError if DVC runs."""
    global _held
    if _held is not None:
        return
    directory = Path(directory).resolve()
    from dvc.exceptions import DvcException, NotDvcRepoError
    from dvc.lock import LockError
    from dvc.repo import Repo
    from dvc.rwlock import rwlock

    try:
        repo = Repo(str(directory), uninitialized=False)
    except NotDvcRepoError:
        return  # Not a DVC repository: DVC cannot run here.
    advice = f"{WHY}: wait for DVC to finish (or stop it), then run Snakemake again."
    try:
        # DVC holds its repo lock from start to end of a command, except while a stage's own
        # command runs; lock() waits up to 3 seconds, as DVC itself does.
        repo.lock.lock()
    except LockError:
        raise ConcurrentRunError(
            f"DVC is running in this project{_dvc_pid(Path(repo.tmp_dir) / 'lock')} (or another "
            f"Snakemake run is): it holds {Path(repo.tmp_dir) / 'lock'}. {advice}"
        ) from None
    stack = ExitStack()
    # Held until the run ends (the last thing released): dvc checkout and dvc pull take
    # only this lock, not rwlock.
    stack.callback(repo.lock.unlock)
    try:
        command = " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])
        stack.enter_context(
            rwlock(
                repo.tmp_dir,
                repo.fs,
                f"Snakemake is running lossbench in this project ({command}). {WHY}: wait for "
                "it to finish (or stop it), then run DVC again",
                [],
                [str(directory)],
                repo.config["core"].get("hardlink_lock", False),
            )
        )
    except LockError as error:
        # While a stage's command runs, DVC lists the stage's files in rwlock with its PID.
        stack.close()
        raise ConcurrentRunError(f"DVC is running a stage in this project: {error} {advice}") from None
    except DvcException as error:  # A damaged .dvc/tmp/rwlock, for one.
        stack.close()
        raise ConcurrentRunError(
            f"Snakemake could not check whether DVC is running in this project: {error}"
        ) from None
    finally:
        repo.close()
    _held = stack
    atexit.register(release_project)


def release_project() -> None:
    """Remove this run's entry from DVC's lock file and release DVC's repo lock (a no-op
    when none is held)."""
    global _held
    if _held is not None:
        stack, _held = _held, None
        stack.close()

"""Scaffolding for the end-to-end tests: a throwaway copy of the project on real images.

`copy_project(root, **changes)` copies what both orchestrators read (Snakefile, dvc.yaml,
params.yaml, environment.yml, workflow/, ...) into `root`, points `download.source` at the shared
JPEG copy of CIFAR-10 and applies `changes` ({"section.key": value}) to params.yaml;
`init_repository(root)` makes it a git + DVC repository with the project's DVC settings;
`run(command, cwd)` runs a tool from this virtual environment and fails with its output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PROJECT = Path(__file__).resolve().parent.parent
SHARED_ARCHIVE = PROJECT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
SHARED_SHA256 = "ff26949c34c4e67da3fa472a1f142e33365dea058f94f1fa369b14ef3d986968"
BIN = Path(sys.executable).parent
# The one-node SLURM cluster of tests/test_slurm.py: its stop script, and the key (in pytest's
# cache, which xdist's workers share) that says which test session started it, so that
# conftest.py stops it when that session ends. The cache is the checkout's, shared by every
# session run there: a session is named by the process id of its controller (xdist's, the
# parent of the worker that started the cluster) or of its only process, so that a second
# session (a few tests run beside the whole suite) never stops the first one's cluster.
STOP_SLURM = PROJECT / "tests" / "slurm" / "stop-slurm.sh"
SLURM_STARTED = "lossbench/slurm-cluster-started-by"


def session_process(config) -> int:
    """The process id that names this test session: its xdist controller's, or its own."""
    return os.getppid() if hasattr(config, "workerinput") else os.getpid()

needs_real_images = pytest.mark.skipif(
    not SHARED_ARCHIVE.is_file(),
    reason=f"the real-image archive {SHARED_ARCHIVE} is absent (it is only on lossbench's "
    "development and CI machines); this test needs real CIFAR-10 images",
)


def environment() -> dict[str, str]:
    return dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", PYTHONUNBUFFERED="1")


def jax_environment(cache: Path) -> dict[str, str]:
    """This environment for a JAX subprocess (the device loop, packs), with JAX's compilation
    cache in `cache` and every computation kept there, so that a second run of the same step
    (a resumed run, the next job of a pack) does not compile it again."""
    return dict(os.environ, KERAS_BACKEND="jax", JAX_COMPILATION_CACHE_DIR=str(cache),
                JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")


def run(command, cwd, check=True, timeout=900, **variables):
    """`command` in `cwd` with the project's environment, plus `variables` (KERAS_BACKEND=...)."""
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                            env=dict(environment(), **variables), timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def set_params(root: Path, **changes) -> None:
    """Apply {"section.key": value} changes to root/params.yaml."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        params[section][key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def write_overlay(path: Path, values: dict) -> Path:
    """An overlay file for `lossbench use-params` holding {"section.key": value} `values`."""
    sections: dict = {}
    for dotted, value in values.items():
        section, key = dotted.split(".")
        sections.setdefault(section, {})[key] = value
    path.write_text(yaml.safe_dump(sections, sort_keys=False))
    return path


def copy_project(root: Path, **changes) -> Path:
    """A copy of the project reading the shared real images, with `changes` to params.yaml."""
    for name in ("Snakefile", "dvc.yaml", "params.yaml", "environment.yml", "pyproject.toml",
                 ".dvcignore", ".gitignore"):
        shutil.copy(PROJECT / name, root / name)
    shutil.copytree(PROJECT / "workflow", root / "workflow",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    set_params(
        root,
        **{
            "preprocess.dataset": "image_folder",
            # Absolute: queued DVC experiments run in copies elsewhere.
            "download.source": str(SHARED_ARCHIVE),
            "download.md5": None,
            "download.sha256": SHARED_SHA256,
            # No tuning runs unless a test asks for them (tests/test_pipeline_e2e.py does): the
            # tune stage still runs once per loss and records that it chose nothing.
            "tune.learning_rates": [],
            **changes,
        },
    )
    return root


def checkout_beside_shared(base: Path) -> Path:
    """A git + DVC repository holding a copy of the project at `base`/lossbench, with the shared
    data beside it as `base`/shared, where the README's offline commands read the images."""
    (base / "shared").symlink_to(SHARED_ARCHIVE.parent.parent)
    (base / "lossbench").mkdir()
    root = copy_project(base / "lossbench")
    init_repository(root)
    return root


def init_repository(root: Path) -> None:
    """git init + dvc init, with the project's DVC settings (hardlinked cache, no analytics)."""
    run(["git", "init", "-q"], root)
    run(["git", "config", "user.email", "ci@lossbench.invalid"], root)
    run(["git", "config", "user.name", "lossbench CI"], root)
    run(["dvc", "init", "-q"], root)
    shutil.copy(PROJECT / ".dvc" / "config", root / ".dvc" / "config")

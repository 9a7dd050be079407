"""Fixtures shared by several test modules."""

import subprocess

import pytest

from lossbench import figures
from projects import SLURM_STARTED, STOP_SLURM, session_process
from studies import STUDY, write_study


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The synthetic study (tests/studies.py) with its figures rendered: (root, summary,
    metrics files, log directories, figures directory)."""
    root = tmp_path_factory.mktemp("study")
    summary_path, metrics_paths, log_dirs = write_study(root, STUDY)
    output_dir = root / "reports" / "figures"
    figures.run(summary_path, metrics_paths, log_dirs, output_dir)
    return root, summary_path, metrics_paths, log_dirs, output_dir


# The modules that take minutes, longest first (measured with `--durations`). The two xdist
# workers (pyproject.toml's addopts) take whole files in collection order, so starting the
# longest ones first lets both workers finish at about the same time. test_slurm.py leads:
# in CI its fixture spends about two minutes installing SLURM with apt, waiting on the network
# while the other worker runs tests.
LONGEST_MODULES = (
    "test_slurm.py", "test_pipeline_e2e.py", "test_review.py", "test_train.py",
    "test_orchestrators.py", "test_workflow.py", "test_bench.py", "test_gpu_check.py",
)


def pytest_collection_modifyitems(config, items):
    """The longest modules first (LONGEST_MODULES), the rest in their usual order; the order
    within each module is kept."""
    def rank(item):
        name = item.path.name
        return LONGEST_MODULES.index(name) if name in LONGEST_MODULES else len(LONGEST_MODULES)

    items.sort(key=rank)


def pytest_sessionfinish(session):
    """Stop the test SLURM cluster once every test has run. It stays up until then because,
    with SLURM's tools installed and no controller answering, every `snakemake` call pays
    ~10 s importing the SLURM executor plugin (it asks `squeue` for help text): the other
    worker's Snakemake tests must not pay that. Runs in the process that runs no tests
    under xdist (its controller), or in the only one without it."""
    if hasattr(session.config, "workerinput") or getattr(session.config, "cache", None) is None:
        return
    # Only the cluster this session started: another session in the same checkout (a few
    # tests run beside the whole suite) stopped the suite's cluster under its SLURM tests.
    if session.config.cache.get(SLURM_STARTED, None) == session_process(session.config):
        subprocess.run(["bash", str(STOP_SLURM)], capture_output=True, timeout=120)
        session.config.cache.set(SLURM_STARTED, None)

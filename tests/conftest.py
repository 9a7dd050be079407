"""Fixtures shared by several test modules."""

import pytest

from lossbench import figures
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


def pytest_collection_modifyitems(config, items):
    """Run tests/test_slurm.py last. When SLURM's client tools are installed and no controller
    answers (as after that module stops the one-node cluster it started), every `snakemake`
    call pays ~10 s importing the SLURM executor plugin, which asks `sacct`/`squeue` for help
    text; the other modules' snakemake calls must not pay that after it. The order within
    each group is kept."""
    items.sort(key=lambda item: item.path.name == "test_slurm.py")

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



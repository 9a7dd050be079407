"""benchmarks/gpu_check.sh --dry-run: every step of the GPU check, shrunk to run on this CPU,
so that a typo fails here and not on a lent GPU machine."""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archives import CIFAR10_CLASSES, make_image_folder_archive

PROJECT = Path(__file__).resolve().parent.parent
PAPER_LOSSES = {"categorical_crossentropy", "hinge", "squared_hinge"}


def load_check_module():
    spec = importlib.util.spec_from_file_location("gpu_check", PROJECT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_gpu_check_runs_dry_on_a_cpu(tmp_path):
    # Ten classes, as CIFAR-10 has: the bench's synthetic data and the training share the
    # model's shapes, and with them JAX's compilation cache.
    archive = make_image_folder_archive(tmp_path, classes={name: (10, 4) for name in CIFAR10_CLASSES})
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    scratch.mkdir()
    environment = dict(os.environ, OUT=str(out), GPU_CHECK_ARCHIVE=str(archive.path),
                       PYTHON=sys.executable, TMPDIR=str(scratch))
    environment.pop("KERAS_BACKEND", None)
    started = time.monotonic()
    result = subprocess.run(["bash", str(PROJECT / "benchmarks" / "gpu_check.sh"), "--dry-run"],
                            env=environment, capture_output=True, text=True, timeout=900)
    print(f"gpu_check.sh --dry-run: {time.monotonic() - started:.1f} s\n{result.stdout[-3000:]}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

    summary = json.loads((out / "gpu-check.json").read_text())
    assert summary["dry_run"] is True and summary["wall_seconds"] >= 0
    backend = "jax" if importlib.util.find_spec("jax") else "tensorflow"
    assert set(summary["runs"]) == PAPER_LOSSES
    for loss, run in summary["runs"].items():
        assert run["exit_status"] == 0 and run["stopped_at_time_limit"] is False, (loss, run)
        assert run["time_limit_seconds"] > 0
        assert (run["train_images"], run["validation_images"]) == (96, 32)
        assert run["epochs_planned"] == run["epochs_completed"] == 1
        for key in ("seconds_per_epoch", "images_per_s", "test_accuracy", "train_accuracy"):
            assert len(run[key]) == 1, (loss, key)
        assert run["seconds_per_epoch"][0] > 0 and run["images_per_s"][0] > 0
        assert 0 <= run["test_accuracy"][0] <= 1
        assert run["backend"] == backend and run["device"].startswith("CPU")
        assert run["precision"] == "float32" and run["diverged"] is False
    bench = summary["bench"]
    assert bench["file"] == "bench-dry-run.json" and bench["errors"] == []
    # The dry run measures every row the full run does (tests/test_bench.py checks them all);
    # the paper's setting is among them, with its whole epoch.
    rows = {(row["backend"], row["precision"], row["batch_size"]): row for row in bench["rows"]}
    row = rows[(backend, "float32", 32)]
    assert row["train_images_per_s"] > 0 and row["epoch_seconds"] > 0
    # Nothing made from the images stays behind: no arrays, checkpoints or models.
    leftovers = [path for path in out.rglob("*") if path.suffix in (".npy", ".npz", ".keras")]
    assert leftovers == [] and list(scratch.iterdir()) == []


def test_the_summary_says_when_a_loss_left_no_logs(tmp_path):
    check = load_check_module()
    summary = check.write_summary(tmp_path, [("hinge", 120.0, 1)], budget=570, elapsed=3,
                                  dry_run=False)
    run = summary["runs"]["hinge"]
    assert run["exit_status"] == 1 and run["stopped_at_time_limit"] is False
    assert "no training logs" in run["error"] and "train-hinge.log" in run["error"]
    assert "the bench wrote no JSON" in summary["bench"]["error"]
    assert json.loads((tmp_path / "gpu-check.json").read_text()) == summary
    assert check.parse_run("hinge=180:124") == ("hinge", 180.0, 124)
    with pytest.raises(ValueError, match="LOSS=LIMIT:STATUS"):
        check.parse_run("hinge")


def test_the_committed_gpu_measurement_matches_its_readme():
    """reports/benchmarks/gpu/README.md quotes the H200 run; each table row is recomputed from
    the committed gpu-check.json, so that the prose cannot drift from the measurement."""
    import re
    import statistics

    folder = PROJECT / "reports" / "benchmarks" / "gpu"
    runs = json.loads((folder / "gpu-check.json").read_text())["runs"]
    readme = (folder / "README.md").read_text()
    assert set(runs) == PAPER_LOSSES
    for loss, run in runs.items():
        seconds, accuracy = run["seconds_per_epoch"], run["test_accuracy"]
        assert run["epochs_completed"] == len(seconds) == len(accuracy)
        later = seconds[1:]
        row = (f"| {run['epochs_completed']} | {seconds[0]:.1f} | {statistics.median(later):.2f} "
               f"({min(later):.2f}–{max(later):.2f}) | {statistics.median(run['images_per_s'][1:]):,.0f} "
               f"| {100 * accuracy[9]:.1f} % | {100 * accuracy[-1]:.1f} % (epoch {len(accuracy)}) "
               f"| {100 * max(accuracy):.1f} % |")
        line = next(line for line in readme.splitlines() if line.startswith(f"| {loss}"))
        assert line.endswith(row), (line, row)
        assert run["device"] == "GPU: NVIDIA H200" and run["precision"] == "float32"
    medians = [statistics.median(run["seconds_per_epoch"][1:]) for run in runs.values()]
    low, high = re.search(r"An epoch takes ([\d.]+)–([\d.]+) s", readme).groups()
    assert float(low) == round(min(medians), 1) and float(high) == round(max(medians), 1)

"""benchmarks/gpu_paper_scale.sh --dry-run: the paper-scale GPU command (pack curve, then a
chunk of the gpu-paper-scale study) shrunk to run on this CPU, so that a typo fails here and
not on a lent GPU machine; and the chunk's choice of runs, on synthetic curves."""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from archives import CIFAR10_CLASSES, make_image_folder_archive

PROJECT = Path(__file__).resolve().parent.parent


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_paper_scale",
                                                  PROJECT / "benchmarks" / "gpu_paper_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="packs need JAX")
def test_the_paper_scale_command_runs_dry_on_a_cpu(tmp_path):
    archive = make_image_folder_archive(tmp_path, classes={name: (10, 4) for name in CIFAR10_CLASSES})
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    scratch.mkdir()
    environment = dict(os.environ, OUT=str(out), PAPER_SCALE_ARCHIVE=str(archive.path),
                       PYTHON=sys.executable, TMPDIR=str(scratch), LOSSBENCH_COMMIT="0" * 40)
    environment.pop("KERAS_BACKEND", None)
    started = time.monotonic()
    result = subprocess.run(["bash", str(PROJECT / "benchmarks" / "gpu_paper_scale.sh"), "--dry-run"],
                            env=environment, capture_output=True, text=True, timeout=900)
    print(f"gpu_paper_scale.sh --dry-run: {time.monotonic() - started:.1f} s\n{result.stdout[-3000:]}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

    curve = json.loads((out / "pack-curve.json").read_text())
    assert curve["dry_run"] is True and curve["commit"] == "0" * 40
    rows = {(row["precision"], row["pack_size"]): row for row in curve["rows"]}
    assert set(rows) == {(p, n) for p in ("float32", "mixed_bfloat16") for n in (1, 2)}
    for row in rows.values():
        assert "error" not in row, row
        assert row["path_images_per_s"] > 0 and row["compiled_images_per_s"] > 0
        assert 0 <= row["host_share"] < 1 and row["gain_over_one"] > 0
    assert rows[("float32", 1)]["gain_over_one"] == 1.0

    chunk = json.loads((out / "study" / "chunk.json").read_text())
    assert chunk["loss"] == "categorical_crossentropy" and chunk["pack"] == [0, 1]
    assert chunk["train_exit_status"] == 0 and chunk["machine"].startswith("CPU")
    for name in ("categorical_crossentropy-seed0", "categorical_crossentropy-seed1"):
        record = chunk["runs"][name]
        assert record["epochs_completed"] == 1 and record["evaluate_exit_status"] == 0, record
        assert record["pack_size"] == 2 and record["started"]
        run = out / "study" / "runs" / name
        evaluation = json.loads((run / "evaluation.json").read_text())
        assert 0 <= evaluation["test_accuracy"] <= 1
        assert json.loads((run / "training" / "run.json").read_text())["pack_size"] == 2
    # Nothing made from the images comes back: no arrays, checkpoints or models.
    leftovers = [path for path in out.rglob("*") if path.suffix in (".npy", ".npz", ".keras")]
    assert leftovers == [] and list(scratch.iterdir()) == []


def test_a_chunk_takes_the_largest_pack_that_fits():
    script = load_script()
    rows = [{"precision": "float32", "pack_size": 1, "path_images_per_s": 25_000.0},
            {"precision": "float32", "pack_size": 8, "path_images_per_s": 100_000.0},
            {"precision": "mixed_bfloat16", "pack_size": 8, "path_images_per_s": 900_000.0},
            {"precision": "float32", "pack_size": 16, "error": "out of memory"}]
    # 8 runs x 100 epochs x 50,000 images at 100,000 images/s: 400 s, 500 s with the overhead.
    assert script.pack_that_fits(520, rows, 8, 100, 50_000, 8) == (8, pytest.approx(500.0))
    # Under that, a smaller pack at the rate of one run (bf16 is not the study's precision).
    count, projected = script.pack_that_fits(480, rows, 8, 100, 50_000, 8)
    assert count < 8 and projected <= 480
    assert script.pack_that_fits(100, rows, 8, 100, 50_000, 8) == (0, None)
    # No more runs than are left; with no curve, the pack as configured.
    assert script.pack_that_fits(520, rows, 8, 100, 50_000, 3)[0] == 3
    assert script.pack_that_fits(520, [], 8, 100, 50_000, 5) == (5, None)


def test_the_study_lists_the_runs_left(tmp_path):
    script = load_script()
    params = yaml.safe_load((PROJECT / "reports" / "studies" / "gpu-paper-scale" / "params.yaml").read_text())
    runs = script.study_runs(params)
    assert len(runs) == 24 and runs[0] == ("categorical_crossentropy", 0)
    (tmp_path / "categorical_crossentropy-seed0").mkdir()
    (tmp_path / "categorical_crossentropy-seed0" / "evaluation.json").write_text("{}")
    assert script.runs_left(params, tmp_path) == runs[1:]

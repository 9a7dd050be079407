"""`lossbench bench --dry-run`: the benchmark runs end to end and reports every figure.

The dry run measures everything the full and quick runs measure (every row, the orchestrators
on this checkout), only at tiny sizes and at the width of the params it is given: here a tiny
model, so that CI checks every measurement without compiling the full-width model several
times per backend. Numbers are printed, never asserted: on shared machines only ratios
measured in the same run mean anything, and those belong in the benchmark's own output.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PROJECT = Path(__file__).resolve().parent.parent


def test_dry_run_benchmark_writes_every_key(tmp_path):
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["model"]["width"] = 0.05
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    result = subprocess.run(
        [sys.executable, "-m", "lossbench.cli", "--params", str(params_path), "bench",
         "--dry-run", "--output", str(tmp_path), "--backends", "tensorflow,jax"],
        cwd=PROJECT, capture_output=True, text=True,
    )
    print(result.stdout)  # the table, for whoever reads the CI log
    assert result.returncode == 0, result.stderr[-3000:]
    [written] = tmp_path.glob("*-dry-run.json")
    results = json.loads(written.read_text())
    assert {backend["backend"] for backend in results["backends"]} == {"tensorflow", "jax"}
    for backend in results["backends"]:
        assert "error" not in backend, backend
        assert backend["matmul_gflops"]["float32"] > 0
        assert backend["input_pipeline_images_per_s"] > 0
        # The path training takes: Keras's `fit` on TensorFlow, the device loop on JAX (whose
        # former `fit` path the full and quick runs measure once more, to compare).
        path = "device_loop" if backend["backend"] == "jax" else "keras_fit"
        rows = {(row["batch_size"], row["precision"], row["path"]): row for row in backend["rows"]}
        assert set(rows) == {(32, "float32", path), (128, "float32", path), (32, "mixed_bfloat16", path)}
        for row in rows.values():
            for key in ("matmul_gflops", "train_images_per_s", "train_efficiency",
                        "compiled_images_per_s"):
                assert row[key] > 0, (key, row)
            # The share of a step's wall time outside the compiled step (feeding, Python, copies).
            assert 0 <= row["host_share"] < 1, row
        assert rows[(32, "float32", path)]["epoch_efficiency"] > 0
    assert set(results["orchestration"]) == {"snakemake_dry_run_s", "dvc_status_s", "dvc_dag_s"}
    # Each works on a fresh clone (no data yet): none is "not measured".
    assert all(seconds is not None for seconds in results["orchestration"].values()), results["orchestration"]
    assert "train eff" in result.stdout and "host %" in result.stdout
    # Which CPU, whether it has bfloat16 units, and bf16's speed-up over float32.
    assert results["cpu"]["model"] and isinstance(results["cpu"]["bf16_units"], list)
    assert "bfloat16 units:" in result.stdout
    for backend in results["backends"]:
        assert backend["precision_speedups"]["mixed_bfloat16/float32 batch 32"] > 0


def test_a_steady_step_time_leaves_out_the_first_call():
    """The path and the compiled computation are timed alike: from the end of the first call
    (which carries the epoch's setup) to the end of the last. Here the first call took 5 s of
    setup and each later call of 4 steps took 2 s: 0.5 s per step, whatever the setup."""
    from lossbench.step_rates import steady_step_seconds

    marks = [(3, 105.0), (7, 107.0), (11, 109.0), (15, 111.0)]
    assert steady_step_seconds(marks) == 0.5
    assert steady_step_seconds([(0, 1.0), (1, 1.25)]) == 0.25
    with pytest.raises(ValueError, match="at least two timed calls"):
        steady_step_seconds([(3, 105.0)])

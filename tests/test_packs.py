"""Packs (lossbench.train.device_loop, lossbench.train.packs): runs trained in one
compiled step are the runs trained alone, and a pack resumes after an interruption.

One JAX process (the device loop's backend) trains, on 80 synthetic images (2 batches of 32 and
a short one of 16) and 48 validation images, width 0.1, 2 epochs:
- three single runs: seed 0 at rate 0.01, seed 1 at 0.01, seed 2 at 0.03 (seeds and rates
  differ, as in a seed pack and a tuning pack);
- the same three as one pack;
- the pack stopped once all three had written their first epoch, then run again (it resumes
  as the same pack);
- the pack stopped after the first run's first epoch alone, then run again (that run resumes
  alone, the other two start afresh as a pack of two).

Why the tolerances are what they are: a pack runs each convolution of its runs as one grouped
convolution and each dense layer as one batched matmul, and XLA may sum a batched kernel's
products in another order than the lone kernel's. Each sum is then the same up to float32
rounding, a relative error of about 2^-23 (1.2e-7) times the square root of the terms summed,
times the sum's cancellation (sum of |terms| over |sum|). A weight's gradient sums over the
batch and every position: 32 x 32 x 32 = 32,768 terms for the first convolution, whose bias
gradient also cancels heavily (its terms have both signs). That rounding reaches the weights
through the updates only, so the difference between a packed and a lone run is measured against
how far training moved the weights, in two ways: over the whole model (the norm of the
difference over the norm of the change: at most UPDATE_TOLERANCE = 1e-4; measured on a 2-core
AMD EPYC: 0.6e-6 to 9.1e-6) and per weight tensor (the largest difference over the largest
change: at most TENSOR_TOLERANCE = 1e-3, for the cancelling first bias; measured: 2.2e-4 there,
1e-5 or less elsewhere). A bug (a run given another run's batch, order, seed, rate or step)
changes the updates by their own order of magnitude: a ratio near 1, not 1e-4. The histories'
losses agree to HISTORY_TOLERANCE (relative), their accuracies exactly (a prediction would have
to sit within rounding of a tie to flip).
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from projects import jax_environment

PROJECT = Path(__file__).resolve().parent.parent

# The differences allowed, as fractions (module docstring).
UPDATE_TOLERANCE = 1e-4
TENSOR_TOLERANCE = 1e-3
HISTORY_TOLERANCE = 1e-5

SCRIPT = r'''
import dataclasses, json, logging, sys
from pathlib import Path

import numpy as np
import yaml
import yaml

sys.path.insert(0, sys.argv[2])
from test_train import write_prepared, write_params
from lossbench.io.prepared import load_prepared
from lossbench.train import packs, training

logging.basicConfig(level=logging.INFO)
out = Path(sys.argv[1])
data = load_prepared(write_prepared(out / "data", train_count=80, test_count=48))
params = yaml.safe_load(write_params(out / "params.yaml", epochs=2, width=0.1).read_text())
config = training.TrainConfig.from_params(params)
arrays = (data.train_images, data.train_labels, data.test_images, data.test_labels)
RUNS = [(0, 0.01), (1, 0.01), (2, 0.03)]
LOSS = "categorical_crossentropy"


def paths(name, seed):
    run_dir = out / name / f"seed{seed}"
    return run_dir / "model.keras", run_dir / "log", run_dir / "checkpoint"


def pack(name):
    configs = [dataclasses.replace(config, learning_rate=rate) for _, rate in RUNS]
    model_paths, log_dirs, checkpoint_dirs = zip(*(paths(name, seed) for seed, _ in RUNS))
    return packs.train_pack(configs, LOSS, [seed for seed, _ in RUNS], arrays, 4,
                               list(model_paths), list(log_dirs), list(checkpoint_dirs))


for seed, rate in RUNS:
    training.train_model(dataclasses.replace(config, learning_rate=rate), LOSS, seed, *arrays, 4,
                         *paths("single", seed))
    model, _ = training.build_training_model(dataclasses.replace(config, learning_rate=rate),
                                             LOSS, seed, 4)
    np.savez(out / f"initial{seed}.npz", *[np.asarray(w) for w in model.get_weights()])
pack("pack")

write_logs = training.write_training_logs


def interrupt_after(calls):
    count = [0]

    def stop(log_dir, history, run_info):
        write_logs(log_dir, history, run_info)
        count[0] += 1
        if count[0] == calls:
            raise KeyboardInterrupt
    return stop


for name, calls in (("resumed", 3), ("partly", 1)):
    training.write_training_logs = interrupt_after(calls)
    try:
        pack(name)
    except KeyboardInterrupt:
        pass
    training.write_training_logs = write_logs
    pack(name)
print("done")
'''


def weights(path: Path) -> list[np.ndarray]:
    import keras

    return [np.asarray(w) for w in keras.saving.load_model(path, compile=False).get_weights()]


def history(directory: Path) -> list[dict]:
    return json.loads((directory / "log" / "history.json").read_text())["epochs"]


def update_difference(run: Path, reference: Path, initial: list[np.ndarray]) -> tuple[float, float]:
    """(over the whole model: |run - reference| / |reference - initial| in the Euclidean norm;
    per tensor, the largest of max|run - reference| / max|reference - initial|)."""
    pairs = list(zip(weights(run / "model.keras"), weights(reference / "model.keras"), initial))
    difference = np.sqrt(sum(float(np.sum((packed - alone) ** 2)) for packed, alone, _ in pairs))
    moved = np.sqrt(sum(float(np.sum((alone - start) ** 2)) for _, alone, start in pairs))
    assert moved > 0, "training changed no weights"
    per_tensor = max(float(np.max(np.abs(packed - alone))) / float(np.max(np.abs(alone - start)))
                     for packed, alone, start in pairs if np.any(alone != start))
    return difference / moved, per_tensor


def within_rounding(run: Path, reference: Path, initial: list[np.ndarray]) -> bool:
    whole, per_tensor = update_difference(run, reference, initial)
    print(f"{run.parent.name}/{run.name}: {whole:.2e} of the update, {per_tensor:.2e} per tensor")
    return whole <= UPDATE_TOLERANCE and per_tensor <= TENSOR_TOLERANCE


def test_a_pack_trains_the_runs_it_packs_and_resumes(tmp_path):
    environment = jax_environment(tmp_path / "jax-cache")
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), str(PROJECT / "tests")],
                            capture_output=True, text=True, env=environment, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "a pack of 3 runs (seeds 0, 1, 2)" in result.stderr
    # The partly interrupted pack: seed 0 resumed alone, seeds 1 and 2 started again as two.
    assert "Resuming categorical_crossentropy seed 0 after epoch 1" in result.stderr
    assert "a pack of 2 runs (seeds 1, 2)" in result.stderr

    for seed in (0, 1, 2):
        single, packed = tmp_path / "single" / f"seed{seed}", tmp_path / "pack" / f"seed{seed}"
        with np.load(tmp_path / f"initial{seed}.npz") as stored:
            initial = [stored[f"arr_{index}"] for index in range(len(stored.files))]
        assert within_rounding(packed, single, initial), seed

        alone, together = history(single), history(packed)
        assert [r["epoch"] for r in alone] == [r["epoch"] for r in together] == [1, 2]
        for record, reference in zip(together, alone):
            for key in ("loss", "val_loss", "learning_rate"):
                assert np.isclose(record[key], reference[key], rtol=HISTORY_TOLERANCE, atol=0), (key, record, reference)
            for key in ("accuracy", "val_accuracy"):
                assert record[key] == reference[key], (key, record, reference)

        # Resumed as the same pack: the uninterrupted pack's results, bit for bit.
        resumed = tmp_path / "resumed" / f"seed{seed}"
        for left, right in zip(weights(resumed / "model.keras"), weights(packed / "model.keras")):
            np.testing.assert_array_equal(left, right)
        assert ([{k: v for k, v in r.items() if k != "seconds"} for r in history(resumed)]
                == [{k: v for k, v in r.items() if k != "seconds"} for r in together])
        # Resumed in other packs: the same runs, up to the rounding of another pack size.
        assert within_rounding(tmp_path / "partly" / f"seed{seed}", single, initial), seed

        run_info = json.loads((packed / "log" / "run.json").read_text())
        assert run_info["pack_size"] == 3 and run_info["seed"] == seed
        # When it started and from which commit (a study checks both against its
        # pre-registration: lossbench.io.preregistration).
        assert run_info["started"].endswith("+00:00") and set(run_info["code"]) == {"commit", "dirty"}
        assert run_info["learning_rate"] == (0.03 if seed == 2 else 0.01)
        # The same files as a lone run writes, no others.
        assert sorted(p.name for p in (packed / "log").iterdir()) == sorted(
            p.name for p in (single / "log").iterdir())


TUNE_SCRIPT = r'''
import json, sys
from pathlib import Path

import yaml

sys.path.insert(0, sys.argv[2])
from test_train import write_prepared, write_params

out = Path(sys.argv[1])
write_prepared(out / "data", train_count=80, test_count=16)
for size in (1, 4):
    params = yaml.safe_load(write_params(out / f"params{size}.yaml", epochs=2, width=0.05).read_text())
    params["train"]["pack_size"] = size
    params["tune"].update(learning_rates=[0.01, 0.03], seeds=[100, 101], epochs=1, holdout_fraction=0.2,
                          max_grid_extensions=0)
    (out / f"params{size}.yaml").write_text(yaml.safe_dump(params))
'''


def test_a_tune_job_packs_its_runs_and_writes_what_it_writes_alone(tmp_path):
    """The tune stage's command, as Snakemake and DVC both run it, with train.pack_size 4 (its
    four runs, two rates x two seeds, in one pack) and 1: the same files, the same runs and the
    same choice, the hold-out accuracies equal (each run validates on its own seed's hold-out)."""
    environment = jax_environment(tmp_path / "jax-cache")
    subprocess.run([sys.executable, "-c", TUNE_SCRIPT, str(tmp_path), str(PROJECT / "tests")],
                   check=True, env=environment, cwd=tmp_path)
    results, logs = {}, {}
    for size in (1, 4):
        command = [sys.executable, "-m", "lossbench.cli", "--params", str(tmp_path / f"params{size}.yaml"),
                   "tune", "--loss", "categorical_crossentropy", "--data", str(tmp_path / "data"),
                   "--output", str(tmp_path / f"tune{size}.json"), "--work-dir", str(tmp_path / f"work{size}")]
        done = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        results[size], logs[size] = json.loads((tmp_path / f"tune{size}.json").read_text()), done.stderr
    assert "a pack of 4 runs" in logs[4] and "a pack of" not in logs[1]
    files = {size: sorted(str(path.relative_to(tmp_path / f"work{size}"))
                          for path in (tmp_path / f"work{size}").rglob("*") if path.is_file())
             for size in (1, 4)}
    assert files[1] == files[4] and any(name.endswith("model.keras") for name in files[4])
    alone, packed = results[1], results[4]
    assert [(r["learning_rate"], r["seed"]) for r in packed["runs"]] == \
        [(r["learning_rate"], r["seed"]) for r in alone["runs"]] == \
        [(0.01, 100), (0.01, 101), (0.03, 100), (0.03, 101)]
    for run, reference in zip(packed["runs"], alone["runs"]):
        assert run["holdout_accuracy"] == reference["holdout_accuracy"], (run, reference)
    assert packed["selected_learning_rate"] == alone["selected_learning_rate"]
    assert packed["mean_holdout_accuracy"] == alone["mean_holdout_accuracy"]


def test_the_dags_train_jobs_train_their_pack_once(tmp_path):
    """Train jobs as Snakemake and DVC run them (one per run, the stage table's paths) with
    train.pack_size 3: the first job to run (seed 1's) trains the pack of seeds 0-2, and the
    other two jobs move their finished results into place without training; each run's files
    are those of the same run trained alone (pack_size 1)."""
    environment = jax_environment(tmp_path / "jax-cache")
    subprocess.run([sys.executable, "-c", TUNE_SCRIPT, str(tmp_path), str(PROJECT / "tests")],
                   check=True, env=environment, cwd=tmp_path)
    for size in (1, 3):
        params = yaml.safe_load((tmp_path / "params1.yaml").read_text())
        params["train"].update(seeds=[0, 1, 2], pack_size=size, epochs=1)
        (tmp_path / f"train{size}.yaml").write_text(yaml.safe_dump(params))

    def job(size: int, seed: int) -> str:
        run, root = f"categorical_crossentropy-seed{seed}", tmp_path / f"project{size}"
        command = [sys.executable, "-m", "lossbench.cli", "--params", str(tmp_path / f"train{size}.yaml"),
                   "train", "--loss", "categorical_crossentropy", "--seed", str(seed),
                   "--data", str(tmp_path / "data"), "--model", str(root / "data/models" / f"{run}.keras"),
                   "--log-dir", str(root / "reports/training" / run),
                   "--checkpoint-dir", str(root / "data/checkpoints" / run)]
        done = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stderr

    first = job(3, 1)
    assert "a pack of 3 runs (seeds 0, 1, 2)" in first
    kept = tmp_path / "project3/data/checkpoints/categorical_crossentropy-seed0/finished"
    assert (kept / "model.keras").is_file() and (kept / "logs" / "history.json").is_file()
    for seed in (0, 2):
        log = job(3, seed)
        assert "trained in its pack by another job" in log and "Training categorical" not in log
    assert not kept.exists()
    job(1, 0)  # the reference: seed 0 alone
    alone, packed = tmp_path / "project1", tmp_path / "project3"
    for seed in (0, 1, 2):
        run = f"categorical_crossentropy-seed{seed}"
        assert (packed / "data/models" / f"{run}.keras").is_file()
        files = sorted(p.name for p in (packed / "reports/training" / run).iterdir())
        assert files == sorted(p.name for p in (alone / "reports/training/categorical_crossentropy-seed0").iterdir())
        assert json.loads((packed / "reports/training" / run / "run.json").read_text())["pack_size"] == 3
    def accuracies(root: Path) -> list:
        path = root / "reports/training/categorical_crossentropy-seed0/history.json"
        return [(r["accuracy"], r["val_accuracy"]) for r in json.loads(path.read_text())["epochs"]]

    assert accuracies(packed) == accuracies(alone)


def test_packs_are_cut_from_the_seeds_in_order_and_a_stale_result_is_never_taken(tmp_path):
    from lossbench.train import pack_jobs

    assert pack_jobs.pack_seeds([0, 1, 2, 3, 4, 5, 6], 4, 3) == [3, 4, 5]
    assert pack_jobs.pack_seeds([0, 1, 2, 3, 4, 5, 6], 6, 3) == [6]
    assert pack_jobs.pack_seeds([5, 1, 9], 9, 8) == [5, 1, 9]
    assert pack_jobs.pack_seeds([0, 1], 7, 8) == [7]  # not a seed of the study: alone
    own = (tmp_path / "data/models/hinge-seed1.keras", tmp_path / "reports/training/hinge-seed1",
           tmp_path / "data/checkpoints/hinge-seed1")
    assert pack_jobs.member_paths(own, "hinge-seed1", "hinge-seed12") == (
        tmp_path / "data/models/hinge-seed12.keras", tmp_path / "reports/training/hinge-seed12",
        tmp_path / "data/checkpoints/hinge-seed12")

    # A finished result kept for seed 1, made with fingerprint "old".
    model, logs = pack_jobs.finished_paths(own[2])
    logs.mkdir(parents=True)
    model.write_bytes(b"model")
    (logs / "run.json").write_text(json.dumps({"fingerprint": "old", "epochs_completed": 2}))
    assert pack_jobs.needs_training(own, {"new"}, 2)
    assert not pack_jobs.needs_training(own, {"old"}, 2)
    assert pack_jobs.needs_training(own, {"old"}, 3)  # unfinished for 3 epochs
    assert pack_jobs.take_finished(own, {"new"}, 2) is None
    assert not logs.parent.exists() and not own[0].exists()  # refused, and deleted

    logs.mkdir(parents=True)
    model.write_bytes(b"model")
    (logs / "run.json").write_text(json.dumps({"fingerprint": "new", "epochs_completed": 2}))
    own[1].mkdir(parents=True)
    (own[1] / "stale.json").write_text("{}")  # a leftover the move replaces
    assert pack_jobs.take_finished(own, {"new"}, 2)["fingerprint"] == "new"
    assert own[0].read_bytes() == b"model" and sorted(p.name for p in own[1].iterdir()) == ["run.json"]
    assert not logs.parent.exists()

"""The Python half of benchmarks/gpu_paper_scale.sh: the pack curve, and one chunk of the
gpu-paper-scale study (reports/studies/gpu-paper-scale/).

    python3 benchmarks/gpu_paper_scale.py curve --out DIR --seconds S [--dry-run]
    python3 benchmarks/gpu_paper_scale.py left [--study DIR]
    python3 benchmarks/gpu_paper_scale.py params --archive A --output P [--dry-run]
    python3 benchmarks/gpu_paper_scale.py chunk --params P --data D --work W --out DIR \
        --seconds S [--curve DIR/pack-curve.json] [--dry-run]

`curve` measures the pack curve (`lossbench.bench_packs`: packs of 1, 2, 4, 8, 16, 24 runs at
batch 32 each, float32 and mixed_bfloat16; a dry run: packs of 1 and 2 of a tiny model) and
writes DIR/pack-curve.json, then prints a table. `left` lists the study's runs without a
committed record. `params` writes the params a chunk trains with: the study's, with the archive
as the data source (its SHA-256 recorded); a dry run shrinks it (DRY_RUN) and trains on the CPU.
`chunk` trains the next runs left (one loss's seeds, as one pack, as many as are projected to
finish in S seconds at the curve's measured rate), evaluates each finished run, and writes under
DIR/study/: runs/<run>/ (history.json, run.json, evaluation.json, metrics.json) and chunk.json
(the code's commit, the machine, each run's wall time, what was not finished and why).

Only the standard library and PyYAML at the top: the lent machine has lossbench's source on
PYTHONPATH, not lossbench installed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parent.parent
STUDY = PROJECT / "reports" / "studies" / "gpu-paper-scale"
# What a dry run shrinks: every step of a chunk, in a minute on a CPU.
DRY_RUN = {"width": 0.05, "train_size": 96, "test_size": 32, "epochs": 1, "seeds": [0, 1],
           "pack_size": 2}
CURVE = {"sizes": [1, 2, 4, 8, 16, 24], "precisions": ["float32", "mixed_bfloat16"],
         "steps": 320, "per_call": 64}
DRY_CURVE = {"sizes": [1, 2], "precisions": ["float32", "mixed_bfloat16"], "steps": 3, "per_call": 1}
# Validation, checkpoints and the first epoch's compilation on top of the training steps: the
# share added to a pack's projected time (the H200 check: 1.8-1.9 s an epoch for ~1.6 s of steps).
OVERHEAD = 0.25


def _lossbench():
    sys.path.insert(0, str(PROJECT / "workflow"))


def run_name(loss: str, seed: int) -> str:
    _lossbench()
    from lossbench.pipeline.runs import run_name as name

    return name(loss, seed)


def study_runs(params: dict) -> list[tuple[str, int]]:
    """Every (loss, seed) of the study, losses outer, as params.yaml orders them."""
    return [(loss, seed) for loss in params["train"]["losses"] for seed in params["train"]["seeds"]]


def runs_left(params: dict, records: Path) -> list[tuple[str, int]]:
    """The study's runs without a finished record (an evaluation) under `records`."""
    return [(loss, seed) for loss, seed in study_runs(params)
            if not (records / run_name(loss, seed) / "evaluation.json").is_file()]


def write_params(archive: Path, output: Path, dry_run: bool) -> dict:
    """The chunk's params: the study's, with `archive` as the source; shrunk in a dry run."""
    _lossbench()
    from lossbench.io.digests import file_sha256
    from lossbench.pipeline.params import validate_params

    params = yaml.safe_load((STUDY / "params.yaml").read_text())
    params["download"].update(source=str(archive), md5=None, sha256=file_sha256(archive))
    if dry_run:
        params["model"]["width"] = DRY_RUN["width"]
        params["preprocess"].update(train_size=DRY_RUN["train_size"], test_size=DRY_RUN["test_size"])
        params["train"].update(epochs=DRY_RUN["epochs"], seeds=DRY_RUN["seeds"], device="cpu",
                               pack_size=DRY_RUN["pack_size"], jit_compile=True)
    validate_params(params)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def measure_curve(params_path: Path, out: Path, seconds: float, dry_run: bool) -> list[dict]:
    """The pack curve under `out`/pack-curve.json (module docstring)."""
    _lossbench()
    from lossbench.bench_packs import pack_curve
    from lossbench.pipeline.params import load_params
    from lossbench.train.training import TrainConfig

    shape = DRY_CURVE if dry_run else CURVE
    config = TrainConfig.from_params(load_params(params_path))
    rows = pack_curve(config, shape["sizes"], shape["precisions"], shape["steps"],
                      shape["per_call"], seconds)
    result = {"dry_run": dry_run, "machine": machine_description(), "width": config.width,
              "commit": commit(), "rows": rows}
    (out / "pack-curve.json").write_text(json.dumps(result, indent=1))
    print(f"{'precision':<15} {'pack':>4} {'images/s':>10} {'compiled':>10} {'host %':>7} {'x one':>6}")
    for row in rows:
        if "error" in row:
            print(f"{row['precision']:<15} {row['pack_size']:>4}  {row['error']}")
        else:
            print(f"{row['precision']:<15} {row['pack_size']:>4} {row['path_images_per_s']:>10.0f} "
                  f"{row['compiled_images_per_s']:>10.0f} {100 * row['host_share']:>7.1f} "
                  f"{row.get('gain_over_one', float('nan')):>6.2f}")
    return rows


def machine_description() -> str:
    """The GPU the backend sees (with the host's CPU), or the CPU alone."""
    _lossbench()
    from lossbench.train.device import cpu_model_name, visible_gpus

    gpus = visible_gpus()
    host = f"{cpu_model_name()} ({os.cpu_count()} cores)"
    return f"GPU: {gpus[0]}; host {host}" if gpus else f"CPU: {host}"


def commit() -> str | None:
    """The code's commit: LOSSBENCH_COMMIT (the lent machine's copy has no .git), else git's."""
    if os.environ.get("LOSSBENCH_COMMIT"):
        return os.environ["LOSSBENCH_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def pack_that_fits(seconds: float, rows: list[dict], pack_size: int, epochs: int,
                   images: int, left: int) -> tuple[int, float | None]:
    """(runs to train in one pack, projected seconds) within `seconds`: the largest count up to
    `pack_size` and `left` whose 100 epochs at the curve's float32 rate for that pack size (or
    the nearest smaller size measured), plus OVERHEAD, fit; (0, None) when none does, and
    (min(pack_size, left), None) when the curve measured nothing (a dry run without one)."""
    measured = {row["pack_size"]: row["path_images_per_s"] for row in rows
                if row.get("precision") == "float32" and "error" not in row}
    if not measured:
        return min(pack_size, left), None
    for count in range(min(pack_size, left), 0, -1):
        sizes = [size for size in measured if size <= count]
        if not sizes:
            continue
        # A pack of `count` is at least as fast as the largest smaller pack measured.
        rate = measured[max(sizes)] * (count / max(sizes) if max(sizes) < count else 1.0)
        rate = min(rate, max(measured.values())) if max(sizes) < count else rate
        projected = count * epochs * images / rate * (1 + OVERHEAD)
        if projected <= seconds:
            return count, projected
    return 0, None


def run_chunk(params_path: Path, data: Path, work: Path, out: Path, seconds: float,
              curve: Path | None, dry_run: bool) -> dict:
    """Train, evaluate and record the next runs (module docstring); returns chunk.json."""
    _lossbench()
    from lossbench.pipeline.params import load_params

    params = load_params(params_path)
    records = out / "study" / "runs"
    records.mkdir(parents=True, exist_ok=True)
    left = runs_left(params, STUDY / "runs") if not dry_run else study_runs(params)
    summary = {"dry_run": dry_run, "commit": commit(), "machine": machine_description(),
               "python": platform.python_version(), "budget_seconds": seconds, "runs": {}}
    if not left:
        summary["note"] = "no runs left"
    else:
        loss = left[0][0]
        seeds = [seed for other, seed in left if other == loss]
        rows = json.loads(curve.read_text())["rows"] if curve and curve.is_file() else []
        counts = json.loads((data / "counts.json").read_text()) if (data / "counts.json").is_file() else {}
        images = int(counts.get("train", {}).get("total", 50_000))
        count, projected = pack_that_fits(seconds, rows, int(params["train"]["pack_size"]),
                                          int(params["train"]["epochs"]), images, len(seeds))
        summary.update(loss=loss, projected_seconds=projected, pack=seeds[:count])
        if count == 0:
            summary["note"] = (f"no pack of {loss} is projected to finish in {seconds:.0f} s at "
                               "the measured rates: nothing trained")
        else:
            _train_and_evaluate(params_path, params, loss, seeds[:count], data, work, records,
                                seconds, summary)
    (out / "study").mkdir(parents=True, exist_ok=True)
    (out / "study" / "chunk.json").write_text(json.dumps(summary, indent=1))
    return summary


def _train_and_evaluate(params_path: Path, params: dict, loss: str, seeds: list[int], data: Path,
                        work: Path, records: Path, seconds: float, summary: dict) -> None:
    names = [run_name(loss, seed) for seed in seeds]
    command = [sys.executable, "-m", "lossbench.cli", "--params", str(params_path), "train",
               "--loss", loss, "--data", str(data / "prepared"),
               "--seed", *map(str, seeds),
               "--model", *[str(work / f"{name}.keras") for name in names],
               "--log-dir", *[str(records / name / "training") for name in names],
               "--checkpoint-dir", *[str(work / "checkpoints" / name) for name in names]]
    started = time.monotonic()
    with open(records.parent / f"train-{loss}.log", "w") as log:
        try:
            status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                                    timeout=max(1.0, seconds)).returncode
        except subprocess.TimeoutExpired:
            status = 124
    summary.update(train_exit_status=status, train_seconds=time.monotonic() - started)
    for seed, name in zip(seeds, names):
        history_path = records / name / "training" / "history.json"
        epochs = len(json.loads(history_path.read_text())["epochs"]) if history_path.is_file() else 0
        record = {"epochs_completed": epochs}
        if epochs < int(params["train"]["epochs"]) or not (work / f"{name}.keras").is_file():
            # An unfinished run leaves no record: the next chunk trains it from the start.
            shutil.rmtree(records / name, ignore_errors=True)
            record["note"] = "unfinished: no record kept; trained again by a later chunk"
        else:
            evaluated = subprocess.run(
                [sys.executable, "-m", "lossbench.cli", "--params", str(params_path), "evaluate",
                 "--loss", loss, "--seed", str(seed), "--data", str(data / "prepared"),
                 "--model", str(work / f"{name}.keras"), "--log-dir", str(records / name / "training"),
                 "--output", str(records / name / "evaluation.json"),
                 "--metrics", str(records / name / "metrics.json"),
                 "--predictions", str(work / f"{name}-predictions.npz")],
                capture_output=True, text=True)
            record["evaluate_exit_status"] = evaluated.returncode
            if evaluated.returncode != 0:
                record["evaluate_error"] = evaluated.stderr[-1500:]
            run_info = json.loads((records / name / "training" / "run.json").read_text())
            record.update(started=run_info.get("started"), pack_size=run_info.get("pack_size"),
                          train_seconds=sum(e.get("seconds", 0) for e in
                                            json.loads(history_path.read_text())["epochs"]))
        summary["runs"][name] = record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    curve = commands.add_parser("curve")
    curve.add_argument("--params", type=Path, required=True)
    curve.add_argument("--out", type=Path, required=True)
    curve.add_argument("--seconds", type=float, required=True)
    curve.add_argument("--dry-run", action="store_true")
    left = commands.add_parser("left")
    left.add_argument("--study", type=Path, default=STUDY)
    made = commands.add_parser("params")
    made.add_argument("--archive", type=Path, required=True)
    made.add_argument("--output", type=Path, required=True)
    made.add_argument("--dry-run", action="store_true")
    chunk = commands.add_parser("chunk")
    for option in ("--params", "--data", "--work", "--out"):
        chunk.add_argument(option, type=Path, required=True)
    chunk.add_argument("--seconds", type=float, required=True)
    chunk.add_argument("--curve", type=Path)
    chunk.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "curve":
        args.out.mkdir(parents=True, exist_ok=True)
        measure_curve(args.params, args.out, args.seconds, args.dry_run)
    elif args.command == "left":
        params = yaml.safe_load((args.study / "params.yaml").read_text())
        remaining = runs_left(params, args.study / "runs")
        print(f"{len(remaining)} of {len(study_runs(params))} runs left")
        _lossbench()
        from lossbench.io.preregistration import check_runs

        records = {path.parent.parent.name: json.loads(path.read_text())
                   for path in (args.study / "runs").glob("*/training/run.json")}
        check_runs(args.study, records)  # refuses a run that began before the pre-registration
        for loss, seed in remaining:
            print(run_name(loss, seed))
    elif args.command == "params":
        write_params(args.archive, args.output, args.dry_run)
    else:
        summary = run_chunk(args.params, args.data, args.work, args.out, args.seconds,
                            args.curve, args.dry_run)
        print(json.dumps({key: value for key, value in summary.items() if key != "machine"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Python half of benchmarks/gpu_check.sh: the check's params, and its one JSON.

    python3 benchmarks/gpu_check.py params --archive A --output P [--dry-run]
    python3 benchmarks/gpu_check.py summary --out DIR --budget S --elapsed S \
        --run LOSS=LIMIT:STATUS [--run ...] [--dry-run]

`params` writes the params file the check's stages run with: params.yaml with the archive as
the data source (its SHA-256 recorded), image folders, and the device: `gpu` on the lent
machine (a job that finds no GPU stops at once instead of training on the CPU), `cpu` in a
dry run, which also shrinks it to a tiny model, a few images and one epoch and compiles the
step with XLA, as a GPU's `auto` does.

`summary` reads what the check wrote under DIR (the bench's JSON, each loss's
training-<loss>/history.json and run.json) and writes DIR/gpu-check.json: per loss the
training images, the seconds of each epoch, images/s (training images over the epoch's wall
seconds, validation included), and the test accuracy after each epoch, with the time limit
the loss had and how its job ended (exit status; 124: stopped at the time limit, as planned
when more epochs are asked for than fit); the bench's rows.

Only the standard library and PyYAML: the lent machine has no lossbench installed, only its
source on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parent.parent
# What a dry run shrinks: enough to run every step of the check, in seconds on a CPU.
DRY_RUN = {"width": 0.05, "train_size": 96, "test_size": 32, "epochs": 1}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_params(archive: Path, output: Path, dry_run: bool) -> dict:
    """The check's params (see the module docstring), validated as every stage validates them."""
    sys.path.insert(0, str(PROJECT / "workflow"))
    from lossbench.pipeline.params import validate_params

    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["download"].update(source=str(archive), md5=None, sha256=sha256(archive))
    params["preprocess"]["dataset"] = "image_folder"
    # steps_per_execution and jit_compile stay `auto` on the GPU: several steps per call, XLA.
    params["train"]["device"] = "cpu" if dry_run else "gpu"
    if dry_run:
        params["model"]["width"] = DRY_RUN["width"]
        params["preprocess"].update(train_size=DRY_RUN["train_size"], test_size=DRY_RUN["test_size"])
        params["train"].update(epochs=DRY_RUN["epochs"], jit_compile=True)
    validate_params(params)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


# The exit status of `timeout` when it stopped the command at its time limit.
TIME_LIMIT_STATUS = 124


def run_summary(out: Path, loss: str, limit: float, status: int) -> dict:
    """One loss's figures, from its training logs (written after every finished epoch)."""
    log_dir = out / f"training-{loss}"
    history, run_info = _read_json(log_dir / "history.json"), _read_json(log_dir / "run.json")
    ended = {"time_limit_seconds": limit, "exit_status": status,
             "stopped_at_time_limit": status == TIME_LIMIT_STATUS}
    if history is None or run_info is None:
        return {"error": f"no training logs in {log_dir}; see {out / f'train-{loss}.log'}", **ended}
    epochs = history["epochs"]
    images = run_info["train_size"]
    return {
        **ended,
        "train_images": images,
        "validation_images": run_info["validation_size"],
        "epochs_planned": run_info["epochs_planned"],
        "epochs_completed": len(epochs),
        "seconds_per_epoch": [round(epoch["seconds"], 3) for epoch in epochs],
        "images_per_s": [round(images / epoch["seconds"], 1) for epoch in epochs],
        "test_accuracy": [epoch["val_accuracy"] for epoch in epochs],
        "train_accuracy": [epoch["accuracy"] for epoch in epochs],
        "loss": [epoch["loss"] for epoch in epochs],
        **{key: run_info.get(key) for key in ("device", "backend", "precision",
                                               "steps_per_execution", "jit_compile", "diverged")},
    }


def bench_summary(out: Path) -> dict:
    """The bench's rows (images/s per backend, precision and batch size) and its file."""
    # `lossbench bench --name bench` writes bench.json, or bench-dry-run.json.
    files = sorted(out.glob("bench*.json"))
    if not files:
        return {"error": f"the bench wrote no JSON; see {out / 'bench.log'}"}
    results = json.loads(files[-1].read_text())
    rows = [row for backend in results["backends"] for row in backend.get("rows", [])]
    keep = ("backend", "path", "precision", "batch_size", "train_images_per_s",
            "compiled_images_per_s", "host_share", "train_efficiency", "epoch_seconds",
            "epoch_efficiency")
    return {"file": files[-1].name, "device": results.get("device"),
            "errors": [backend["error"] for backend in results["backends"] if "error" in backend],
            "rows": [{key: row.get(key) for key in keep} for row in rows]}


def parse_run(text: str) -> tuple[str, float, int]:
    """(loss, time limit, exit status) of a `--run LOSS=LIMIT:STATUS` argument."""
    loss, _, rest = text.partition("=")
    limit, _, status = rest.partition(":")
    try:
        return loss, float(limit), int(status)
    except ValueError:
        raise ValueError(f"--run {text!r} must read LOSS=LIMIT:STATUS, e.g. hinge=180:124") from None


def write_summary(out: Path, runs: list[tuple[str, float, int]], budget: float, elapsed: float,
                  dry_run: bool) -> dict:
    """Write DIR/gpu-check.json (the module docstring says what it holds) and return it."""
    summary = {
        "dry_run": dry_run,
        "budget_seconds": budget,
        "wall_seconds": elapsed,
        "bench": bench_summary(out),
        "runs": {loss: run_summary(out, loss, limit, status) for loss, limit, status in runs},
    }
    (out / "gpu-check.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    params = commands.add_parser("params")
    params.add_argument("--archive", type=Path, required=True)
    params.add_argument("--output", type=Path, required=True)
    params.add_argument("--dry-run", action="store_true")
    summary = commands.add_parser("summary")
    summary.add_argument("--out", type=Path, required=True)
    summary.add_argument("--run", action="append", required=True, type=parse_run,
                         help="LOSS=LIMIT:STATUS: a loss trained, its time limit (s), its exit status")
    summary.add_argument("--budget", type=float, required=True, help="the check's time budget, s")
    summary.add_argument("--elapsed", type=float, required=True, help="the check's wall time, s")
    summary.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "params":
        write_params(args.archive, args.output, args.dry_run)
        return 0
    result = write_summary(args.out, args.run, args.budget, args.elapsed, args.dry_run)
    for loss, run in result["runs"].items():
        if "error" in run:
            print(f"{loss}: {run['error']}")
        else:
            print(f"{loss}: {run['epochs_completed']} epoch(s), s/epoch {run['seconds_per_epoch']}, "
                  f"test accuracy {run['test_accuracy']}")
    print(f"Wrote {args.out / 'gpu-check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Drive the label-noise study's trainings, one at a time, from this fixed worktree.

Usage (from the worktree's root, with `lossbench` on PATH and PYTHONPATH=workflow so that the
worktree's code is the one imported):
    python study/run_study.py prepare   # download (the local copy) and one prepared set per noise rate
    python study/run_study.py train     # every run, in the pre-registered order; resumes

Each run gets its own params file (the study's base params with the run's noise rate), is
trained with `lossbench train` and evaluated on the whole clean test set with
`lossbench evaluate`. A run whose metrics exist is skipped, so the script resumes where it
stopped. The order puts noise 0 and 0.4 of every loss and seed first (the primary family
needs both), then noise 0.2, so that a study cut short still answers its primary questions.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent
# The `lossbench` on PATH (run from a virtual environment, with PYTHONPATH pointing at the
# worktree's workflow/ so that the worktree's code is the one imported).
BIN = "lossbench"
BASE = yaml.safe_load(open(ROOT / "base-params.yaml"))
LOSSES = BASE["train"]["losses"]
SEEDS = BASE["train"]["seeds"]
PRIMARY_RATES, SECONDARY_RATES = [0.0, 0.4], [0.2]


def arm(rate: float) -> str:
    return f"noise{rate:g}"


def params_for(rate: float) -> Path:
    params = json.loads(json.dumps(BASE))
    params["preprocess"]["label_noise"] = rate
    path = ROOT / "params" / f"{arm(rate)}.yaml"
    path.parent.mkdir(exist_ok=True)
    yaml.safe_dump(params, open(path, "w"), sort_keys=False)
    return path


def lossbench(params: Path, *args: str, log: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT.parent / "workflow"), TF_CPP_MIN_LOG_LEVEL="2")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle:
        subprocess.run([BIN, "--params", str(params), *args], check=True, env=env,
                       stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT.parent)


def prepare() -> None:
    archive = ROOT / "data" / "raw" / "archive"
    if not archive.is_file():
        lossbench(params_for(0.0), "download", "--output", str(archive), log=ROOT / "prepare.log")
    for rate in PRIMARY_RATES + SECONDARY_RATES:
        output = ROOT / "data" / arm(rate)
        if (output / "manifest.json").is_file():
            continue
        lossbench(params_for(rate), "preprocess", "--input", str(archive), "--output", str(output),
                  "--counts", str(ROOT / arm(rate) / "counts.json"), log=ROOT / "prepare.log")


def run(rate: float, loss: str, seed: int) -> None:
    out = ROOT / arm(rate)
    name = f"{loss}-seed{seed}"
    metrics = out / "metrics" / f"{name}.json"
    if metrics.exists():
        return
    params = params_for(rate)
    log = out / "logs" / f"{name}.log"
    start = time.time()
    common = ["--loss", loss, "--seed", str(seed), "--data", str(ROOT / "data" / arm(rate)),
              "--model", str(out / "models" / f"{name}.keras"), "--log-dir", str(out / "training" / name)]
    lossbench(params, "train", *common, "--checkpoint-dir", str(out / "checkpoints" / name), log=log)
    lossbench(params, "evaluate", *common, "--output", str(out / "evaluation" / f"{name}.json"),
              "--metrics", str(metrics), "--predictions", str(out / "predictions" / f"{name}.npz"),
              log=log)
    print(f"{time.strftime('%H:%M:%S')} {arm(rate)} {name} {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["prepare"]:
        prepare()
    elif sys.argv[1:] == ["train"]:
        for rates in (PRIMARY_RATES, SECONDARY_RATES):
            for seed in SEEDS:
                for rate in rates:
                    for loss in LOSSES:
                        run(rate, loss, seed)
    else:
        sys.exit(__doc__)

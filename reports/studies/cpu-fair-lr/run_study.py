"""Drive one study's trainings, one at a time, from this fixed worktree.

Usage: python study/run_study.py tuning|headline
Each run gets its own params file (the study's base params with the run's settings), is
trained with `lossbench train` and, for the headline study, evaluated on the whole test set
with `lossbench evaluate`. A run whose outputs exist is skipped, so the script resumes.
"""
import json, os, subprocess, sys, time
from pathlib import Path
import yaml

ROOT = Path(__file__).resolve().parent
# The `lossbench` on PATH (the study ran it from a virtual environment, with PYTHONPATH
# pointing at the worktree's workflow/ so that the worktree's code is the one imported).
BIN = "lossbench"
BASE = yaml.safe_load(open(ROOT / "base-params.yaml"))
LOSSES = ["categorical_crossentropy", "hinge", "squared_hinge"]
TUNE_RATES = [0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
TUNE_SEEDS, TUNE_EPOCHS = [100], 6
HEADLINE_SEEDS = list(range(8))


def params_for(name, **train):
    params = json.loads(json.dumps(BASE))
    params["train"].update(train)
    path = ROOT / "params" / f"{name}.yaml"
    path.parent.mkdir(exist_ok=True)
    yaml.safe_dump(params, open(path, "w"), sort_keys=False)
    return path


def lossbench(params, *args, log):
    env = dict(os.environ, PYTHONPATH=str(ROOT.parent / "workflow"), TF_CPP_MIN_LOG_LEVEL="2")
    with open(log, "a") as handle:
        subprocess.run([BIN, "--params", str(params), *args], check=True, env=env,
                       stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT.parent)


def run(arm, name, loss, seed, evaluate, **train):
    out = ROOT / arm
    model = out / "models" / f"{name}.keras"
    metrics = out / "metrics" / f"{name}.json"
    if (metrics if evaluate else model).exists():
        return
    params = params_for(f"{arm}-{name}", **train)
    log = out / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    common = ["--loss", loss, "--seed", str(seed), "--data", "study/data/prepared",
              "--model", str(model), "--log-dir", str(out / "training" / name)]
    lossbench(params, "train", *common, "--checkpoint-dir", str(out / "checkpoints" / name), log=log)
    if evaluate:
        lossbench(params, "evaluate", *common, "--output", str(out / "evaluation" / f"{name}.json"),
                  "--metrics", str(metrics), log=log)
    print(f"{time.strftime('%H:%M:%S')} {arm} {name} {time.time() - start:.0f} s", flush=True)


if sys.argv[1] == "tuning":
    for seed in TUNE_SEEDS:
        for rate in TUNE_RATES:
            for loss in LOSSES:
                run("tuning", f"{loss}-lr{rate:g}-seed{seed}", loss, seed, False,
                    learning_rate=rate, epochs=TUNE_EPOCHS, validation="holdout")
elif sys.argv[1] == "select":
    # Pre-registered rule: per loss, the rate with the highest mean final-epoch hold-out
    # accuracy over the tuning seeds; a diverged run counts as not selectable.
    chosen, table = {}, {}
    for loss in LOSSES:
        scores = {}
        for rate in TUNE_RATES:
            finals = []
            for seed in TUNE_SEEDS:
                history = json.load(open(ROOT / "tuning" / "training" / f"{loss}-lr{rate:g}-seed{seed}" / "history.json"))
                run_info = json.load(open(ROOT / "tuning" / "training" / f"{loss}-lr{rate:g}-seed{seed}" / "run.json"))
                epochs = history["epochs"] if isinstance(history, dict) else history
                last = epochs[-1] if epochs else {}
                value = last.get("val_accuracy")
                finals.append(None if run_info.get("diverged") or value is None else value)
            scores[rate] = None if None in finals else sum(finals) / len(finals)
        table[loss] = {f"{rate:g}": score for rate, score in scores.items()}
        chosen[loss] = max((rate for rate in TUNE_RATES if scores[rate] is not None), key=lambda r: scores[r])
    json.dump(chosen, open(ROOT / "tuning" / "learning_rates.json", "w"), indent=2)
    json.dump(table, open(ROOT / "tuning" / "holdout_accuracy.json", "w"), indent=2)
    print(json.dumps(chosen), json.dumps(table, indent=1))
elif sys.argv[1] == "headline":
    # Both arms, seed by seed, so that an interrupted study still has paired seeds of both.
    rates = json.load(open(ROOT / "tuning" / "learning_rates.json"))
    paper = BASE["train"]["learning_rate"]
    for seed in HEADLINE_SEEDS:
        for loss in LOSSES:
            run("paper-lr", f"{loss}-seed{seed}", loss, seed, True, learning_rate=paper)
            if rates[loss] != paper:
                run("tuned-lr", f"{loss}-seed{seed}", loss, seed, True, learning_rate=rates[loss])

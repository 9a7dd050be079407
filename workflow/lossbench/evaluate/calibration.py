"""Calibration of one run: are its probabilities trustworthy? From arrays: no model, no files.

In:  the model's score rows on the test images and on the images that fit the temperature
     (a held-out split of the *training* set, never the test set:
     `lossbench.evaluate.training_sample.temperature_split`), their labels, and the loss's
     output activation.
Out: `calibration_fields`, the evaluation's calibration numbers (`lossbench.evaluate`):

     "test_ece", "test_nll", "test_brier", "temperature", "test_ece_after_temperature",
     "test_nll_after_temperature", "test_brier_after_temperature",
     "calibration": {"bins": 15, "probabilities": "...", "temperature_images": 5000,
                     "temperature_split": "holdout" | "training",
                     "reliability": {"count": [...], "confidence": [...], "accuracy": [...]},
                     "reliability_after_temperature": {...}}

Definitions (Guo, Pleiss, Sun and Weinberger, ICML 2017):
- Probabilities: a softmax loss's model outputs, as saved (they sum to 1 up to float32
  rounding); for a loss on linear outputs (`ova_*`, `crammer_singer_hinge`, `square`) the
  softmax of its raw scores, which those losses never trained as probabilities
  (`calibration.probabilities` says which). For the NLL and the temperature a probability
  below 1e-12 (a float32 softmax that underflowed) counts as 1e-12.
- ECE, expected calibration error: the top-label confidence (the largest probability) of each
  test image falls into one of 15 equal-width bins (i/15, (i+1)/15]; ECE = sum over bins of
  (images in bin / images) x |accuracy in bin - mean confidence in bin|. 0 is perfect.
- NLL: the mean over test images of -log p_true (natural log).
- Brier score: the mean over test images of sum_k (p_k - y_k)^2, y one-hot (0 to 2).
- Temperature scaling: one scalar T > 0 divides the logits (log-probabilities for softmax
  outputs, raw scores for linear ones), p = softmax(z / T); T minimises the NLL on the
  temperature images (scipy.optimize.minimize_scalar on log T in [0.01, 100]). T > 1 means
  the model was over-confident. It never changes a prediction, only its confidence; the
  "after temperature" numbers are the test set's under the fitted T.
- `temperature_split` "holdout": the hold-out training left out (`train.validation:
  holdout`), images the model never saw. "training": a stratified `evaluate.temperature_fraction`
  of the training images (the run's seed), which a run trained on every training image
  (`train.validation: test`, the paper's) has seen: its fitted T is optimistic (too small).
  The temperature images carry the labels training read, noisy ones under label noise.
- A run with any non-finite score (diverged) or no temperature images gets nulls.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lossbench.core.temperature import TEMPERATURE_BOUNDS

CALIBRATION_BINS = 15
PROBABILITY_FLOOR = 1e-12
PROBABILITY_SOURCES = {
    "softmax": "the model's softmax outputs",
    "linear": "the softmax of the model's linear scores (the loss trained no probabilities)",
}
FLAT_FIELDS = ("test_ece", "test_nll", "test_brier", "temperature", "test_ece_after_temperature",
               "test_nll_after_temperature", "test_brier_after_temperature")


def probabilities(scores: np.ndarray, output_activation: str) -> np.ndarray:
    """Probabilities (float64) from a model's score rows: a softmax model's outputs as they
    are, the softmax of a linear model's scores."""
    from scipy.special import softmax

    scores = np.asarray(scores, dtype=np.float64)
    if output_activation == "softmax":
        return scores
    if output_activation != "linear":
        raise ValueError(f"output_activation must be softmax or linear, got {output_activation!r}.")
    return softmax(scores, axis=1)


def logits(scores: np.ndarray, output_activation: str) -> np.ndarray:
    """Log-probabilities (float64): log max(p, 1e-12) of a softmax model's outputs, the log
    softmax of a linear model's scores. Temperature scaling divides these by T."""
    from scipy.special import log_softmax

    scores = np.asarray(scores, dtype=np.float64)
    if output_activation == "softmax":
        return np.log(np.maximum(scores, PROBABILITY_FLOOR))
    if output_activation != "linear":
        raise ValueError(f"output_activation must be softmax or linear, got {output_activation!r}.")
    return log_softmax(scores, axis=1)


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
    """Per equal-width bin of top-label confidence: images, mean confidence and accuracy
    (None for an empty bin). Bin i holds confidences in (i / bins, (i + 1) / bins]."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    confidence_sum = np.bincount(index, weights=confidence, minlength=bins)
    correct_sum = np.bincount(index, weights=correct.astype(np.float64), minlength=bins)
    filled = count > 0
    return {
        "count": count.tolist(),
        "confidence": [float(value) if full else None
                       for value, full in zip(confidence_sum / np.maximum(count, 1), filled)],
        "accuracy": [float(value) if full else None
                     for value, full in zip(correct_sum / np.maximum(count, 1), filled)],
    }


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray,
                               bins: int = CALIBRATION_BINS) -> float:
    """ECE over equal-width confidence bins (module docstring)."""
    table = reliability(probabilities, labels, bins)
    total = sum(table["count"])
    return float(sum(count / total * abs(accuracy - confidence) for count, confidence, accuracy
                     in zip(table["count"], table["confidence"], table["accuracy"]) if count))


def negative_log_likelihood(log_probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p_true."""
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    return float(-np.mean(log_probabilities[np.arange(labels.size), labels]))


def brier_score(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean over images of sum_k (p_k - y_k)^2 with one-hot y."""
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    one_hot = np.eye(probabilities.shape[1])[labels]
    return float(np.mean(np.sum((probabilities - one_hot) ** 2, axis=1)))


def fit_temperature(log_probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T in TEMPERATURE_BOUNDS minimising the NLL of softmax(z / T)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    def nll(log_temperature: float) -> float:
        scaled = log_softmax(log_probabilities / math.exp(log_temperature), axis=1)
        return negative_log_likelihood(scaled, labels)

    low, high = (math.log(bound) for bound in TEMPERATURE_BOUNDS)
    result = minimize_scalar(nll, bounds=(low, high), method="bounded", options={"xatol": 1e-6})
    return float(math.exp(result.x))


def scaled(log_probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Log-probabilities under temperature scaling: log softmax(z / T)."""
    from scipy.special import log_softmax

    return log_softmax(log_probabilities / temperature, axis=1)


def no_calibration(probabilities: str | None = None) -> dict[str, Any]:
    """The calibration fields of a run that has none (diverged, or not measured)."""
    return {**{name: None for name in FLAT_FIELDS}, "calibration": {
        "bins": CALIBRATION_BINS, "probabilities": probabilities, "temperature_images": None,
        "temperature_split": None, "reliability": None, "reliability_after_temperature": None}}


def calibration_fields(test_scores: np.ndarray, test_labels: np.ndarray, output_activation: str,
                       temperature_scores: np.ndarray | None, temperature_labels: np.ndarray | None,
                       temperature_split: str | None) -> dict[str, Any]:
    """The evaluation's calibration numbers (module docstring); nulls for non-finite scores."""
    source = PROBABILITY_SOURCES[output_activation]
    if not np.all(np.isfinite(test_scores)):
        return no_calibration(source)
    test_log = logits(test_scores, output_activation)
    test_probabilities = probabilities(test_scores, output_activation)
    fields = no_calibration(source)
    fields.update(test_ece=expected_calibration_error(test_probabilities, test_labels),
                  test_nll=negative_log_likelihood(test_log, test_labels),
                  test_brier=brier_score(test_probabilities, test_labels))
    fields["calibration"]["reliability"] = reliability(test_probabilities, test_labels)
    if temperature_scores is None or len(temperature_scores) == 0 or not np.all(np.isfinite(temperature_scores)):
        return fields
    temperature = fit_temperature(logits(temperature_scores, output_activation), temperature_labels)
    after_log = scaled(test_log, temperature)
    after = np.exp(after_log)
    fields.update(temperature=temperature,
                  test_ece_after_temperature=expected_calibration_error(after, test_labels),
                  test_nll_after_temperature=negative_log_likelihood(after_log, test_labels),
                  test_brier_after_temperature=brier_score(after, test_labels))
    fields["calibration"].update(temperature_images=int(len(temperature_scores)),
                                 temperature_split=temperature_split,
                                 reliability_after_temperature=reliability(after, test_labels))
    return fields

"""Calibration (ECE, NLL, Brier, temperature scaling): hand computations, and a saved model's
ECE recomputed independently from its saved predictions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lossbench import evaluate
from lossbench.evaluate import calibration
from lossbench.evaluate.predictions import read_predictions
from lossbench.evaluate.training_sample import temperature_split
from test_evaluate import (
    channel_images,
    evaluate_params,
    expected_probabilities,
    save_channel_model,
    write_logs,
    write_prepared,
)

# Four images, three classes, by hand: confidences 0.9 (right), 0.9 (wrong), 0.5 (right),
# 0.7 (right) fall in the bins (13/15, 14/15], (7/15, 8/15] and (10/15, 11/15].
HAND_PROBABILITIES = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.5, 0.3, 0.2], [0.2, 0.7, 0.1]])
HAND_LABELS = np.array([0, 1, 0, 1])


def independent_ece(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE written out image by image, without lossbench.evaluate.calibration."""
    total = 0.0
    for index in range(bins):
        lower, upper = index / bins, (index + 1) / bins
        members = [row for row in range(len(labels))
                   if lower < probabilities[row].max() <= upper or (index == 0 and probabilities[row].max() == 0)]
        if members:
            confidence = np.mean([probabilities[row].max() for row in members])
            accuracy = np.mean([probabilities[row].argmax() == labels[row] for row in members])
            total += len(members) / len(labels) * abs(accuracy - confidence)
    return total


def test_ece_nll_and_brier_by_hand():
    # ECE: 2/4 |0.5 - 0.9| + 1/4 |1 - 0.5| + 1/4 |1 - 0.7| = 0.2 + 0.125 + 0.075.
    assert calibration.expected_calibration_error(HAND_PROBABILITIES, HAND_LABELS) == pytest.approx(0.4)
    table = calibration.reliability(HAND_PROBABILITIES, HAND_LABELS)
    assert table["count"][13] == 2 and table["count"][7] == 1 and table["count"][10] == 1
    assert sum(table["count"]) == 4 and table["confidence"][0] is None
    assert table["accuracy"][13] == 0.5 and table["confidence"][13] == pytest.approx(0.9)
    logs = calibration.logits(HAND_PROBABILITIES, "softmax")
    assert calibration.negative_log_likelihood(logs, HAND_LABELS) == pytest.approx(
        -(math.log(0.9) + math.log(0.05) + math.log(0.5) + math.log(0.7)) / 4)
    # Brier: 0.015, 1.715, 0.38 and 0.14 per image.
    assert calibration.brier_score(HAND_PROBABILITIES, HAND_LABELS) == pytest.approx(2.25 / 4)


def test_bins_are_closed_above():
    # A confidence of exactly 0.6 = 9/15 belongs to (8/15, 9/15], bin 8; 1.0 to the last bin.
    probabilities = np.array([[0.6, 0.4], [1.0, 0.0]])
    table = calibration.reliability(probabilities, np.array([0, 0]))
    assert table["count"][8] == 1 and table["count"][14] == 1


def test_linear_scores_are_measured_through_a_softmax():
    scores = np.log(HAND_PROBABILITIES) + 3.0  # the same probabilities after a softmax
    fields = calibration.calibration_fields(scores, HAND_LABELS, "linear", None, None, None)
    assert fields["test_ece"] == pytest.approx(0.4)
    assert "softmax of the model's linear scores" in fields["calibration"]["probabilities"]
    assert fields["temperature"] is None and fields["test_ece_after_temperature"] is None
    softmax_fields = calibration.calibration_fields(HAND_PROBABILITIES, HAND_LABELS, "softmax", None, None, None)
    assert softmax_fields["calibration"]["probabilities"] == "the model's softmax outputs"
    assert softmax_fields["test_nll"] == pytest.approx(fields["test_nll"])


def test_temperature_matches_the_closed_form():
    # Two classes, every image scored [z, 0], a fraction a labelled 0: the NLL is least where
    # softmax(z / T)_0 = a, i.e. T = z / log(a / (1 - a)). z = 4, a = 3/4: T = 4 / log 3.
    scores = np.tile([4.0, 0.0], (400, 1))
    labels = np.array([0, 0, 0, 1] * 100)
    temperature = calibration.fit_temperature(calibration.logits(scores, "linear"), labels)
    assert temperature == pytest.approx(4 / math.log(3), rel=1e-4)
    fields = calibration.calibration_fields(scores, labels, "linear", scores, labels, "holdout")
    assert fields["temperature"] == pytest.approx(4 / math.log(3), rel=1e-4)
    # Over-confident (0.98 claimed, 0.75 right) before; calibrated after.
    assert fields["test_ece"] == pytest.approx(1 / (1 + math.exp(-4)) - 0.75)
    assert fields["test_ece_after_temperature"] == pytest.approx(0.0, abs=1e-4)
    assert fields["test_nll_after_temperature"] < fields["test_nll"]
    assert fields["calibration"]["temperature_images"] == 400
    assert fields["calibration"]["temperature_split"] == "holdout"


def test_non_finite_scores_give_no_calibration():
    scores = HAND_PROBABILITIES.copy()
    scores[0, 0] = np.nan
    fields = calibration.calibration_fields(scores, HAND_LABELS, "softmax", scores, HAND_LABELS, "training")
    assert all(fields[name] is None for name in calibration.FLAT_FIELDS)


def test_temperature_split_prefers_the_runs_hold_out():
    labels = np.repeat(np.arange(4), 50)
    held_run = {"validation": "holdout", "holdout_fraction": 0.2, "validation_size": 40, "train_size": 160}
    indices, split = temperature_split(labels, held_run, seed=3, fraction=0.1)
    assert split == "holdout" and len(indices) == 40
    from lossbench.core.batches import split_validation
    np.testing.assert_array_equal(indices, split_validation(labels, "holdout", 0.2, 3)[1])
    indices, split = temperature_split(labels, {"validation": "test"}, seed=3, fraction=0.1)
    assert split == "training" and len(indices) == 20
    assert np.bincount(labels[indices]).tolist() == [5] * 4  # stratified


def test_saved_models_ece_recomputed_from_its_predictions(tmp_path):
    images, labels = channel_images()  # 12 images, 4 per class
    data_dir = write_prepared(tmp_path / "prepared", images, labels)
    model_path = save_channel_model(tmp_path / "model.keras")
    log_dir = write_logs(tmp_path / "log")
    output, review = tmp_path / "evaluation.json", tmp_path / "metrics.json"
    predictions_path = tmp_path / "predictions.npz"
    evaluate.run(evaluate_params(batch_size=5, train_sample=None, temperature_fraction=0.5),
                 loss_name="categorical_crossentropy", seed=7, data_dir=data_dir, model_path=model_path,
                 log_dir=log_dir, output=output, metrics_output=review, predictions_output=predictions_path)
    metrics = json.loads(output.read_text())
    saved = read_predictions(predictions_path)
    # The saved rows are the model's outputs, computed here in closed form.
    np.testing.assert_allclose(saved["test_scores"], expected_probabilities(images), atol=1e-5)
    np.testing.assert_array_equal(saved["test_labels"], labels)
    recomputed = independent_ece(saved["test_scores"], saved["test_labels"])
    assert metrics["test_ece"] == pytest.approx(recomputed, abs=1e-9)
    # The review file carries it rounded to 4 decimals (lossbench.io.review), as DVC shows it.
    assert json.loads(review.read_text())["test_ece"] == round(metrics["test_ece"], 4)
    assert metrics["test_ece"] == pytest.approx(independent_ece(expected_probabilities(images), labels), abs=1e-6)
    # The temperature was fitted on training images (2 of each class's 4), never test ones.
    assert metrics["calibration"]["temperature_split"] == "training"
    assert metrics["calibration"]["temperature_images"] == 6 == len(saved["temperature_indices"])
    assert np.bincount(saved["temperature_labels"]).tolist() == [2, 2, 2]
    refit = calibration.fit_temperature(calibration.logits(saved["temperature_scores"], "softmax"),
                                        saved["temperature_labels"])
    assert metrics["temperature"] == pytest.approx(refit)
    assert metrics["setup"]["label_noise"] == 0.0
    for name in ("test_nll", "test_brier", "test_ece_after_temperature"):
        assert isinstance(metrics[name], float), name

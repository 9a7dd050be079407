"""The gradient scale at initialisation: mean |d loss_i / d output_ik|, checked by hand."""

import numpy as np
import pytest

from lossbench.train.gradient_scale import output_gradient_scale

RANDOM = np.random.default_rng(0)
LOGITS = RANDOM.normal(size=(64, 10))
PROBABILITIES = np.exp(LOGITS) / np.exp(LOGITS).sum(axis=1, keepdims=True)
LABELS = RANDOM.integers(0, 10, size=64)


def test_cross_entropy_on_softmax_outputs_pushes_minus_one_over_p_true():
    p_true = PROBABILITIES[np.arange(64), LABELS]
    expected = np.mean(1.0 / p_true) / 10  # one non-zero entry of 10 per image
    assert output_gradient_scale("categorical_crossentropy", PROBABILITIES, LABELS) == pytest.approx(expected, rel=1e-4)


def test_the_papers_hinge_is_a_hundred_times_weaker_than_cross_entropy_at_uniform_outputs():
    uniform = np.full((64, 10), 0.1, dtype=np.float32)
    hinge = output_gradient_scale("hinge", uniform, LABELS)
    squared = output_gradient_scale("squared_hinge", uniform, LABELS)
    cross_entropy = output_gradient_scale("categorical_crossentropy", uniform, LABELS)
    # hinge: d/dp_true of mean_k max(0, 1 - y_k p_k) = -1/10 on one entry of 10.
    assert hinge == pytest.approx(0.01, rel=1e-5)
    # squared hinge: d/dp_true of (1 - p)^2 / 10 = -2 (1 - p) / 10 = -0.18 on one entry of 10.
    assert squared == pytest.approx(0.018, rel=1e-5)
    assert cross_entropy == pytest.approx(1.0, rel=1e-5)  # -1/0.1 on one entry of 10
    assert cross_entropy / hinge == pytest.approx(100, rel=1e-4)

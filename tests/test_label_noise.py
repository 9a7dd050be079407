"""Label noise (`preprocess.label_noise`): made once in preprocess, on training labels only."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from archives import CIFAR10_CLASSES, make_cifar10_archive, make_cifar100_archive
from archives import prepare_with_defaults as prepare
from lossbench.io.prepared import CLEAN_LABELS_FILE, load_prepared
from lossbench.pipeline.params import ParamsError, load_params, validate_params, with_defaults
from lossbench.preprocess import label_noise
from lossbench.preprocess import run as preprocess_run
from lossbench.preprocess.label_noise import PATRINI_PAIRS, add_label_noise

CLASSES = list(CIFAR10_CLASSES)
PROJECT = Path(__file__).resolve().parent.parent


def test_symmetric_noise_changes_the_stated_fraction_of_labels_to_other_classes():
    clean = np.repeat(np.arange(10, dtype=np.int32), 500)
    noisy = add_label_noise(clean, CLASSES, 0.4, "symmetric", seed=3)
    changed = noisy != clean
    # The rate is the fraction of labels that differ (between 36 and 40 % by any definition;
    # 40 % exactly here: 200 of each class's 500).
    assert 0.36 <= changed.mean() <= 0.40
    assert changed.mean() == pytest.approx(0.40)
    assert np.bincount(clean[changed], minlength=10).tolist() == [200] * 10
    # Every class keeps 300 of its own images, and the wrong labels spread over the other
    # classes (each of the 9 gets some, none is the same class).
    assert np.bincount(clean[~changed], minlength=10).tolist() == [300] * 10
    for label in range(10):
        received = noisy[changed & (clean == label)]
        assert label not in received and len(set(received.tolist())) == 9
    np.testing.assert_array_equal(clean, np.repeat(np.arange(10), 500))  # the input untouched
    assert noisy.dtype == np.int32
    # Seeded: the same seed, the same labels; another seed, other labels.
    np.testing.assert_array_equal(noisy, add_label_noise(clean, CLASSES, 0.4, "symmetric", seed=3))
    assert not np.array_equal(noisy, add_label_noise(clean, CLASSES, 0.4, "symmetric", seed=4))


def test_pairs_noise_flips_patrini_classes_only():
    clean = np.repeat(np.arange(10, dtype=np.int32), 100)
    noisy = add_label_noise(clean, CLASSES, 0.3, "pairs", seed=0)
    changed = noisy != clean
    assert changed.sum() == 5 * 30  # 30 % of each of the five source classes
    for source, target in PATRINI_PAIRS.items():
        flipped = noisy[clean == CLASSES.index(source)]
        assert set(flipped.tolist()) == {CLASSES.index(source), CLASSES.index(target)}
        assert np.count_nonzero(flipped == CLASSES.index(target)) == 30
    for name in ("airplane", "automobile", "frog", "horse", "ship"):
        assert not changed[clean == CLASSES.index(name)].any()


def test_zero_noise_is_the_identity():
    clean = np.arange(30, dtype=np.int32) % 3
    np.testing.assert_array_equal(add_label_noise(clean, ["a", "b", "c"], 0.0), clean)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, "0.2"])
def test_rates_outside_zero_to_one_are_refused(rate):
    with pytest.raises(ValueError, match=r"preprocess.label_noise is .* \[0, 1\)"):
        add_label_noise(np.zeros(10, dtype=np.int32), ["a", "b"], rate)
    params = load_params(PROJECT / "params.yaml")
    params["preprocess"]["label_noise"] = rate
    with pytest.raises(ParamsError, match="preprocess.label_noise"):
        validate_params(params)


def test_a_rate_that_would_empty_a_class_is_refused():
    # One image of class "b": round(0.5 x 1) = 1 flip would leave it no correct label.
    labels = np.array([0, 0, 0, 0, 1, 2, 2], dtype=np.int32)
    with pytest.raises(ValueError, match=r"every training image of b \(1 image\)"):
        add_label_noise(labels, ["a", "b", "c"], 0.5)
    # 0.4 x 1 rounds to 0: class b keeps its image.
    assert add_label_noise(labels, ["a", "b", "c"], 0.4)[4] == 1


def test_unidentifiable_rates_warn(caplog):
    clean = np.repeat(np.arange(3, dtype=np.int32), 10)
    with caplog.at_level(logging.WARNING):
        add_label_noise(clean, ["a", "b", "c"], 0.7)
    assert "at least as likely as the true one" in caplog.text


def test_pairs_need_the_cifar10_classes():
    with pytest.raises(ValueError, match="no class .*Use preprocess.label_noise_mode: symmetric"):
        add_label_noise(np.arange(4, dtype=np.int32), ["a", "b", "c", "d"], 0.2, "pairs")
    with pytest.raises(ValueError, match="label_noise_mode is 'flip'"):
        label_noise.check_rate(0.2, "flip")


def test_preprocess_records_the_flips_and_never_touches_test_labels(tmp_path):
    expected = make_cifar10_archive(tmp_path)  # 50 training images, 5 per class; 20 test
    counts = prepare(expected.path, dataset="cifar10", output_dir=tmp_path / "noisy",
                     counts_path=tmp_path / "counts.json", label_noise=0.4, subset_seed=5)
    data = load_prepared(tmp_path / "noisy")
    np.testing.assert_array_equal(data.train_clean_labels, expected.train_labels)
    np.testing.assert_array_equal(data.test_labels, expected.test_labels)
    np.testing.assert_array_equal(data.train_images, expected.train_images)
    changed = data.train_labels != data.train_clean_labels
    assert changed.sum() == 20 and data.label_noise_share == pytest.approx(0.4)  # 2 of 5 per class
    record = json.loads((tmp_path / "counts.json").read_text())["label_noise"]
    assert record == counts["label_noise"]
    assert record == {"rate": 0.4, "mode": "symmetric", "images": 50, "changed": 20,
                      "realised_rate": 0.4, "changed_per_class": {name: 2 for name in CIFAR10_CLASSES}}
    # counts.json's per-class training counts are of the labels as stored (noisy); test clean.
    assert counts["train"]["per_class"] == {
        name: int(np.count_nonzero(data.train_labels == index)) for index, name in enumerate(CIFAR10_CLASSES)}
    assert counts["test"]["per_class"] == {
        name: int(np.count_nonzero(expected.test_labels == index)) for index, name in enumerate(CIFAR10_CLASSES)}
    # Made once and reproducibly: the same parameters give the same files.
    preprocess_run(with_defaults("preprocess", {"dataset": "cifar10", "subset_seed": 5, "label_noise": 0.4}),
                   expected.path, tmp_path / "again", tmp_path / "again.json",
                   max_archive_bytes=with_defaults("download", {})["max_archive_bytes"])
    np.testing.assert_array_equal(load_prepared(tmp_path / "again").train_labels, data.train_labels)


def test_clean_preprocess_writes_no_clean_label_file(tmp_path):
    expected = make_cifar10_archive(tmp_path)
    counts = prepare(expected.path, dataset="cifar10", output_dir=tmp_path / "clean",
                     counts_path=tmp_path / "counts.json")
    assert not (tmp_path / "clean" / CLEAN_LABELS_FILE).exists()
    data = load_prepared(tmp_path / "clean")
    assert data.train_clean_labels is None and data.label_noise_share == 0.0
    np.testing.assert_array_equal(data.train_labels, expected.train_labels)
    assert counts["label_noise"]["changed"] == 0 and counts["label_noise"]["realised_rate"] == 0.0


def test_preprocess_refuses_bad_noise_before_writing(tmp_path):
    expected = make_cifar10_archive(tmp_path)
    # 10 training images, one per class: 0.5 would relabel each class's only image.
    with pytest.raises(ValueError, match="would relabel every training image"):
        prepare(expected.path, dataset="cifar10", output_dir=tmp_path / "out",
                counts_path=tmp_path / "counts.json", train_size=10, label_noise=0.5)
    hundred = make_cifar100_archive(tmp_path)
    with pytest.raises(ValueError, match="pairs flips CIFAR-10's similar classes"):
        prepare(hundred.path, dataset="cifar100", output_dir=tmp_path / "out",
                counts_path=tmp_path / "counts.json", label_noise=0.2, label_noise_mode="pairs")
    assert not (tmp_path / "out").exists() and not (tmp_path / "counts.json").exists()


def test_training_resumes_only_on_the_same_noisy_labels(tmp_path):
    """Training reads the labels preprocess made once; its checkpoints are keyed by the data,
    labels included, so a checkpoint of clean labels is never resumed on noisy ones (and a
    rerun of preprocess with the same parameters makes the very same labels: same key)."""
    from lossbench.train.checkpoint import data_signature

    expected = make_cifar10_archive(tmp_path)
    signatures = []
    for name, rate in (("clean", 0.0), ("noisy", 0.2), ("again", 0.2)):
        prepare(expected.path, dataset="cifar10", output_dir=tmp_path / name,
                counts_path=tmp_path / f"{name}.json", label_noise=rate)
        data = load_prepared(tmp_path / name)
        signatures.append(data_signature(data.train_images, data.train_labels, data.test_images, data.test_labels))
    assert signatures[0] != signatures[1] and signatures[1] == signatures[2]

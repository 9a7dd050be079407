"""The prepared arrays are checked where they are read (issue 20, D4 and D12).

`load_prepared` is how train, tune and evaluate read `data/prepared`: a label outside the
classes, a label that is not an integer, or a file changed after preprocess wrote it (its
manifest's SHA-256 no longer matches) stops them with the file and the remedy named, never a
silent training.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lossbench.io.prepared import MANIFEST_NAME, Split, load_prepared, write_prepared

CLASSES = ["a", "b", "c"]
REMEDY = ("--forcerun preprocess", "dvc repro --force preprocess")


def write(directory: Path, train_labels=None, test_labels=None) -> Path:
    """A small prepared directory as preprocess writes it (manifest included)."""
    images = np.random.default_rng(0).integers(0, 256, size=(12, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(12, dtype=np.int32) % 3
    write_prepared(
        directory,
        {"train": Split(images, labels if train_labels is None else train_labels),
         "test": Split(images[:6], labels[:6] if test_labels is None else test_labels)},
        CLASSES,
    )
    return directory


def test_a_written_directory_reads_back_and_describes_every_file(tmp_path):
    data = load_prepared(write(tmp_path / "prepared"))

    assert data.class_names == tuple(CLASSES) and data.train_labels.dtype == np.int32
    manifest = json.loads((tmp_path / "prepared" / MANIFEST_NAME).read_text())["files"]
    assert set(manifest) == {"train_images.npy", "train_labels.npy", "test_images.npy",
                             "test_labels.npy", "classes.json"}
    size = (tmp_path / "prepared" / "train_images.npy").stat().st_size
    assert manifest["train_images.npy"]["bytes"] == size
    assert len(manifest["train_images.npy"]["sha256"]) == 64


LABELS = np.arange(12, dtype=np.int32) % 3


@pytest.mark.parametrize(
    ("split", "labels", "expected"),
    [
        ("train", np.where(LABELS == 2, 99, LABELS).astype(np.int32), "labels from 0 to 99, outside 0 .. 2"),
        ("train", np.where(LABELS == 2, -1, LABELS).astype(np.int32), "labels from -1 to 1, outside 0 .. 2"),
        ("test", LABELS[:6].astype(np.float32), "float32 labels; labels must be integer class numbers"),
    ],
    ids=["label-99", "label-minus-1", "float-test-labels"],
)
def test_labels_outside_the_classes_or_not_integers_are_refused(tmp_path, split, labels, expected):
    directory = write(tmp_path / "prepared", **{f"{split}_labels": labels})

    with pytest.raises(ValueError) as error:
        load_prepared(directory)

    message = str(error.value)
    assert f"{directory}/{split}_labels.npy" in message and expected in message
    assert all(remedy in message for remedy in REMEDY)


def test_an_array_changed_in_place_is_refused_naming_the_cached_copy(tmp_path):
    """The red team's probe: bytes overwritten inside train_images.npy, same size, same inode
    (DVC's cache object too), so DVC still calls it up to date."""
    directory = write(tmp_path / "prepared")
    damaged = directory / "train_images.npy"
    md5 = json.loads((directory / MANIFEST_NAME).read_text())["files"]["train_images.npy"]["md5"]
    with damaged.open("r+b") as handle:
        handle.seek(2000)
        handle.write(b"\xff" * 5000)

    with pytest.raises(ValueError) as error:
        load_prepared(directory)

    message = str(error.value)
    assert f"{damaged} differs from the SHA-256 that manifest.json records" in message
    assert f".dvc/cache/files/md5/{md5[:2]}/{md5[2:]}" in message
    assert all(remedy in message for remedy in REMEDY)


def test_data_without_a_manifest_or_with_a_broken_one_is_refused(tmp_path):
    directory = write(tmp_path / "prepared")
    (directory / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="manifest.json is unreadable or incomplete"):
        load_prepared(directory)
    (directory / MANIFEST_NAME).unlink()
    with pytest.raises(FileNotFoundError, match="lacks manifest.json. Run `lossbench preprocess`"):
        load_prepared(directory)


def test_the_train_stage_refuses_a_damaged_array_before_training(tmp_path, monkeypatch):
    from lossbench import train
    from lossbench.pipeline.params import load_params
    from lossbench.train import device

    directory = write(tmp_path / "prepared")
    with (directory / "test_labels.npy").open("r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\x07\x00\x00\x00")
    # Where training would run does not matter here; asking the backend costs seconds.
    monkeypatch.setattr(device, "select_device", lambda *args: ("cpu", "a test CPU"))
    params = load_params(Path(__file__).resolve().parent.parent / "params.yaml")
    out = tmp_path / "run"

    with pytest.raises(ValueError, match="test_labels.npy differs from the SHA-256"):
        train.run(params, "hinge", 0, directory, out / "model.keras", out / "log", out / "checkpoint")
    assert not out.exists()


def test_the_clean_labels_of_label_noise_are_described_and_checked_too(tmp_path):
    images = np.zeros((12, 32, 32, 3), dtype=np.uint8)
    splits = {"train": Split(images, LABELS), "test": Split(images[:6], LABELS[:6])}
    directory = tmp_path / "prepared"
    write_prepared(directory, splits, CLASSES, train_clean_labels=(LABELS + 1) % 3)
    assert "train_clean_labels.npy" in json.loads((directory / MANIFEST_NAME).read_text())["files"]
    assert load_prepared(directory).label_noise_share == 1.0

    np.save(directory / "train_clean_labels.npy", LABELS)  # changed after preprocess
    with pytest.raises(ValueError, match="train_clean_labels.npy differs from the SHA-256"):
        load_prepared(directory)
    (directory / "train_clean_labels.npy").unlink()
    with pytest.raises(ValueError, match="train_clean_labels.npy is missing, although manifest"):
        load_prepared(directory)

    write_prepared(directory, splits, CLASSES, train_clean_labels=LABELS + 5)
    with pytest.raises(ValueError, match=r"train_clean_labels.npy holds labels from 5 to 7"):
        load_prepared(directory)

"""The prepared data: the arrays the preprocess stage writes, their writer and their reader.

`write_prepared` takes each split's `Split` (uint8 images (N, 32, 32, 3), int32 labels (N,))
and the class names, and writes them as ``<split>_images.npy``, ``<split>_labels.npy`` and
``classes.json`` into a directory swapped in whole. With label noise
(`lossbench.label_noise`) ``train_labels.npy`` holds the noisy labels that training reads, and
``train_clean_labels.npy`` the clean ones: the labels that differ are the ones flipped. Without
noise that file is not written, so the paper's prepared data stays as it was.

`load_prepared` takes such a directory (from `lossbench preprocess`) and gives back
`PreparedData`: the training and test arrays and the class names; or a ValueError naming
the damaged file and how to make it again.

A module of its own so that the stages that read the arrays (train, evaluate, bench) need
not import the stage that writes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lossbench.atomic import staged_directory

IMAGE_SIZE = 32
SPLITS = ("train", "test")
PREPARED_FILES = (
    "train_images.npy",
    "train_labels.npy",
    "test_images.npy",
    "test_labels.npy",
    "classes.json",
)
# Written only with label noise: the clean training labels, beside the noisy ones.
CLEAN_LABELS_FILE = "train_clean_labels.npy"


@dataclass(frozen=True, eq=False)
class Split:
    """One split's uint8 images (N, 32, 32, 3) and int32 labels (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def take(self, indices: np.ndarray) -> Split:
        return Split(self.images[indices], self.labels[indices])


def write_prepared(output_dir: Path, splits: dict[str, Split], class_names: list[str],
                   train_clean_labels: np.ndarray | None = None) -> None:
    """Write the splits' arrays and the class names into ``output_dir``, replaced whole;
    ``train_clean_labels`` (the labels before label noise) only where given."""
    with staged_directory(output_dir) as staging:
        for split in SPLITS:
            np.save(staging / f"{split}_images.npy", splits[split].images, allow_pickle=False)
            np.save(staging / f"{split}_labels.npy", splits[split].labels, allow_pickle=False)
        if train_clean_labels is not None:
            np.save(staging / CLEAN_LABELS_FILE, train_clean_labels, allow_pickle=False)
        (staging / "classes.json").write_text(json.dumps(list(class_names), indent=2) + "\n")


@dataclass(frozen=True, eq=False)
class PreparedData:
    """The arrays the preprocess stage wrote: uint8 images (N, 32, 32, 3), int32 labels.

    `train_labels` are the labels training reads (noisy, with label noise);
    `train_clean_labels` the labels before the noise, None when there was none.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    train_clean_labels: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def label_noise_share(self) -> float:
        """The fraction of training labels that differ from the clean ones (0 without noise)."""
        if self.train_clean_labels is None or len(self.train_labels) == 0:
            return 0.0
        return float(np.mean(self.train_clean_labels != self.train_labels))


def load_prepared(data_dir: Path) -> PreparedData:
    """Read the arrays the preprocess stage wrote into ``data_dir``."""
    data_dir = Path(data_dir)
    missing = [name for name in PREPARED_FILES if not (data_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"The prepared data directory {data_dir} lacks {', '.join(missing)}. Run "
            "`lossbench preprocess` (or `dvc repro preprocess`, or Snakemake) first."
        )
    # A damaged file (truncated by a full disk, or edited in place: with DVC's hardlinked
    # cache that also damages the cached copy) must name itself and say how to remake it.
    remake = (
        f"Make the prepared data again: `snakemake --cores 1 --forcerun preprocess`, "
        f"`dvc repro --force preprocess` or `lossbench preprocess`. (`dvc checkout {data_dir}` "
        "restores it only if DVC's cached copy is intact; with hardlinks it is the same file.)"
    )
    arrays = {}
    names = ["train_images", "train_labels", "test_images", "test_labels"]
    if (data_dir / CLEAN_LABELS_FILE).is_file():
        names.append("train_clean_labels")
    for name in names:
        path = data_dir / f"{name}.npy"
        try:
            arrays[name] = np.load(path, mmap_mode=None, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise ValueError(
                f"The prepared array {path} is unreadable or shorter than its header says "
                f"({error}). {remake}"
            ) from error
    try:
        with (data_dir / "classes.json").open() as handle:
            class_names = tuple(json.load(handle))
    except (ValueError, OSError) as error:
        raise ValueError(
            f"The class list {data_dir / 'classes.json'} is unreadable ({error}). {remake}"
        ) from error
    for split in SPLITS:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if (
            images.dtype != np.uint8
            or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3)
            or labels.shape != images.shape[:1]
        ):
            raise ValueError(
                f"{data_dir}/{split}_*.npy hold images {images.shape} {images.dtype} and labels "
                f"{labels.shape}, not uint8 (N, 32, 32, 3) and (N,). Delete {data_dir} and run "
                "`lossbench preprocess` again."
            )
    clean = arrays.get("train_clean_labels")
    if clean is not None and clean.shape != arrays["train_labels"].shape:
        raise ValueError(
            f"{data_dir / CLEAN_LABELS_FILE} holds {clean.shape} labels for "
            f"{arrays['train_labels'].shape} training labels. {remake}"
        )
    return PreparedData(class_names=class_names, **arrays)

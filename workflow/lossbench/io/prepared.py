"""The prepared data: the arrays the preprocess stage writes, their writer and their reader.

`write_prepared` takes each split's `Split` (uint8 images (N, 32, 32, 3), int32 labels (N,))
and the class names, and writes them as ``<split>_images.npy``, ``<split>_labels.npy`` and
``classes.json`` into a directory swapped in whole, with ``manifest.json``: each file's size,
SHA-256 and MD5 (the name DVC's cache gives it). With label noise
(`lossbench.preprocess.label_noise`) ``train_labels.npy`` holds the noisy labels that training
reads, and ``train_clean_labels.npy`` the clean ones: the labels that differ are the ones
flipped. Without noise that file is not written, so the paper's prepared data stays as it was.

`load_prepared` takes such a directory (from `lossbench preprocess`) and gives back
`PreparedData`: the training and test arrays and the class names; or a ValueError naming
the damaged file and how to make it again. Before anything is used it checks every file
against the manifest (a file edited in place, which with DVC's hardlinked cache also damages
the cached copy, differs from its SHA-256 even when DVC still calls it up to date), then the
arrays themselves: uint8 images of 32x32x3, one integer label per image, every label a class
number of classes.json (0 .. classes - 1).

A module of its own so that the stages that read the arrays (train, tune, evaluate, bench)
need not import the stage that writes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lossbench.io.atomic import staged_directory
from lossbench.io.digests import file_digests

IMAGE_SIZE = 32
SPLITS = ("train", "test")
MANIFEST_NAME = "manifest.json"
# The files the manifest describes, then the manifest itself.
DESCRIBED_FILES = (
    "train_images.npy",
    "train_labels.npy",
    "test_images.npy",
    "test_labels.npy",
    "classes.json",
)
# Written only with label noise: the clean training labels, beside the noisy ones.
CLEAN_LABELS_FILE = "train_clean_labels.npy"
PREPARED_FILES = (*DESCRIBED_FILES, MANIFEST_NAME)


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
        manifest = {
            "about": "Written by `lossbench preprocess`: the size and digests of each file "
                     "beside it. train, tune and evaluate check them before using the data.",
            "files": {name: _describe(staging / name) for name in DESCRIBED_FILES
                      + ((CLEAN_LABELS_FILE,) if train_clean_labels is not None else ())},
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")


def _digests(path: Path, *algorithms: str) -> dict[str, str]:
    """The hex digests of the file at ``path``, read once in chunks."""
    return file_digests(path, *algorithms)


def _describe(path: Path) -> dict:
    return {"bytes": path.stat().st_size, **_digests(path, "sha256", "md5")}


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


def _remake(data_dir: Path) -> str:
    return (
        "Make the prepared data again: `snakemake --cores 1 --forcerun preprocess`, "
        "`dvc repro --force preprocess` or `lossbench preprocess`. (`dvc checkout "
        f"{data_dir}` restores it only if DVC's cached copy is intact; with hardlinks it is "
        "the same file.)"
    )


def _damaged(path: Path, problem: str, md5: str | None) -> ValueError:
    """The error for a prepared file that differs from the manifest, with the remedy."""
    cache = ""
    if md5:
        # DVC's cache hardlinks its outputs: an edit in place damaged the cached copy too, and
        # `dvc repro --force` would keep that copy (an object of that name exists already).
        cache = (
            f" If DVC tracks this project, delete its damaged cached copy first: "
            f"`rm -f .dvc/cache/files/md5/{md5[:2]}/{md5[2:]}`."
        )
    return ValueError(
        f"The prepared file {path} {problem}: it was changed after `lossbench preprocess` "
        f"wrote it (edited in place, or damaged on disk), so it is not used.{cache} Then make "
        "the prepared data again: `snakemake --cores 1 --forcerun preprocess` or "
        "`dvc repro --force preprocess`."
    )


def verify_manifest(data_dir: Path) -> None:
    """Raise ValueError naming the first prepared file whose size or SHA-256 differs from
    ``manifest.json`` (written by `write_prepared`)."""
    data_dir = Path(data_dir)
    manifest_path = data_dir / MANIFEST_NAME
    try:
        described = json.loads(manifest_path.read_text())["files"]
        # The clean labels (label noise only) are checked wherever the file or its entry is.
        optional = (CLEAN_LABELS_FILE,) if (data_dir / CLEAN_LABELS_FILE).exists() else ()
        expected = {name: described[name] for name in (*DESCRIBED_FILES, *optional)}
        expected.update((name, entry) for name, entry in described.items()
                        if name == CLEAN_LABELS_FILE)
        if not all(isinstance(entry.get("bytes"), int) and isinstance(entry.get("sha256"), str)
                   for entry in expected.values()):
            raise ValueError("an entry lacks its bytes or sha256")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(
            f"The manifest {manifest_path} is unreadable or incomplete ({type(error).__name__}: "
            f"{error}). {_remake(data_dir)}"
        ) from error
    for name, entry in expected.items():
        path = data_dir / name
        if not path.is_file():
            raise _damaged(path, f"is missing, although {MANIFEST_NAME} lists it", entry.get("md5"))
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise _damaged(path, f"holds {size:,} bytes, not the {entry['bytes']:,} of "
                                 f"{MANIFEST_NAME}", entry.get("md5"))
        if _digests(path, "sha256")["sha256"] != entry["sha256"]:
            raise _damaged(path, f"differs from the SHA-256 that {MANIFEST_NAME} records",
                           entry.get("md5"))


def load_prepared(data_dir: Path) -> PreparedData:
    """Read the arrays the preprocess stage wrote into ``data_dir``, checked first."""
    data_dir = Path(data_dir)
    missing = [name for name in PREPARED_FILES if not (data_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"The prepared data directory {data_dir} lacks {', '.join(missing)}. Run "
            "`lossbench preprocess` (or `dvc repro preprocess`, or Snakemake) first."
        )
    verify_manifest(data_dir)
    # A damaged file (truncated by a full disk, or edited in place: with DVC's hardlinked
    # cache that also damages the cached copy) must name itself and say how to remake it.
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
                f"({error}). {_remake(data_dir)}"
            ) from error
    try:
        with (data_dir / "classes.json").open() as handle:
            class_names = tuple(json.load(handle))
    except (ValueError, OSError, TypeError) as error:
        raise ValueError(
            f"The class list {data_dir / 'classes.json'} is unreadable ({error}). {_remake(data_dir)}"
        ) from error
    for split in SPLITS:
        check_split(data_dir, split, arrays[f"{split}_images"], arrays[f"{split}_labels"],
                    len(class_names))
    clean = arrays.get("train_clean_labels")
    if clean is not None:
        check_labels(data_dir / CLEAN_LABELS_FILE, clean, arrays["train_labels"].shape,
                     len(class_names))
    return PreparedData(class_names=class_names, **arrays)


def check_split(data_dir: Path, split: str, images: np.ndarray, labels: np.ndarray,
                num_classes: int) -> None:
    """Raise ValueError unless ``images`` are uint8 (N, 32, 32, 3) and ``labels`` N integer
    class numbers in 0 .. num_classes - 1, naming the file and the remedy."""
    if images.dtype != np.uint8 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise ValueError(
            f"{data_dir}/{split}_images.npy holds {images.dtype} images of shape "
            f"{images.shape}, not uint8 (N, 32, 32, 3). {_remake(data_dir)}"
        )
    check_labels(data_dir / f"{split}_labels.npy", labels, images.shape[:1], num_classes)


def check_labels(path: Path, labels: np.ndarray, shape: tuple, num_classes: int) -> None:
    """Raise ValueError unless ``labels`` (read from ``path``) has ``shape`` (one per image)
    and holds integer class numbers in 0 .. num_classes - 1."""
    remake = _remake(path.parent)
    if labels.shape != shape:
        raise ValueError(
            f"{path} holds labels of shape {labels.shape}, not one per image {shape}. {remake}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{path} holds {labels.dtype} labels; labels must be integer class numbers "
            f"(0 .. {num_classes - 1}). {remake}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{path} holds labels from {labels.min()} to {labels.max()}, outside 0 .. "
            f"{num_classes - 1}, the {num_classes} classes of classes.json. {remake}"
        )

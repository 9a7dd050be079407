"""The official CIFAR-10 and CIFAR-100 python releases, read from an archive in memory.

In:  the archive's `TarContents` and regular files by path (from lossbench.io.archive), and
     which release: ``cifar10`` (``cifar-10-batches-py/data_batch_1`` .. ``_5``,
     ``test_batch``, ``batches.meta``) or ``cifar100`` (``cifar-100-python/train``, ``test``,
     ``meta``; the 100 fine labels are used).
Out: the class names in label order and each split's `Split`: uint8 images (N, 32, 32, 3),
     RGB, and int32 labels, in the archive's order; or ArchiveError naming the file that is
     missing, is not a CIFAR batch, or holds data of the wrong shape or labels out of range.

The batches are pickles, and a pickle can run arbitrary code when loaded while download.source
may point at any archive: they are loaded by an unpickler that builds only plain containers
and numpy arrays.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from lossbench.io.archive import ArchiveError, TarContents, path_parts
from lossbench.io.prepared import IMAGE_SIZE, Split

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR100_FOLDER = "cifar-100-python"


@dataclass(frozen=True)
class Release:
    """Where one official release keeps its batches, and the keys naming labels and classes."""

    folder: str
    label_key: bytes
    names_key: bytes
    batch_files: dict[str, tuple[str, ...]]
    meta_file: str


RELEASES = {
    "cifar10": Release(
        CIFAR10_FOLDER,
        label_key=b"labels",
        names_key=b"label_names",
        batch_files={
            "train": tuple(f"data_batch_{index}" for index in range(1, 6)),
            "test": ("test_batch",),
        },
        meta_file="batches.meta",
    ),
    "cifar100": Release(
        CIFAR100_FOLDER,
        label_key=b"fine_labels",
        names_key=b"fine_label_names",
        batch_files={"train": ("train",), "test": ("test",)},
        meta_file="meta",
    ),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays; the CIFAR batches need no more."""

    ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset(
        {
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, "latin1").
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str):
        # Pickles written by numpy 1 name numpy.core, which numpy 2 moved to numpy._core.
        if module.startswith("numpy.core"):
            module = "numpy._core" + module[len("numpy.core") :]
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_cifar(
    archive: Path, dataset: str, contents: TarContents, files: dict[str, tarfile.TarInfo]
) -> tuple[list[str], dict[str, Split]]:
    """Class names and each split's images and labels of the release ``dataset``."""
    release = RELEASES[dataset]
    by_leaf = {
        parts[-1]: member
        for name, member in files.items()
        if len(parts := path_parts(name)) >= 2 and parts[-2] == release.folder
    }
    needed = [*release.batch_files["train"], *release.batch_files["test"], release.meta_file]
    missing = [name for name in needed if name not in by_leaf]
    if missing:
        raise ArchiveError(
            f"{archive} lacks {', '.join(f'{release.folder}/{name}' for name in missing)} of "
            f"the official {dataset} release. Delete it and run `lossbench download` again."
        )

    meta = _load_pickle(archive, contents, by_leaf[release.meta_file])
    if release.names_key not in meta:
        raise ArchiveError(
            f"{archive}: {release.folder}/{release.meta_file} lacks the key {release.names_key!r}."
        )
    class_names = [
        name.decode("utf-8") if isinstance(name, bytes) else str(name)
        for name in meta[release.names_key]
    ]

    splits = {}
    for split, batch_names in release.batch_files.items():
        batches = [
            _read_batch(archive, release, contents, by_leaf[name], len(class_names))
            for name in batch_names
        ]
        splits[split] = Split(
            np.ascontiguousarray(np.concatenate([images for images, _labels in batches])),
            np.concatenate([labels for _images, labels in batches]).astype(np.int32),
        )
    return class_names, splits


def _load_pickle(archive: Path, contents: TarContents, member: tarfile.TarInfo) -> dict:
    try:
        batch = _ArrayUnpickler(io.BytesIO(contents.member_bytes(member)), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise ArchiveError(
            f"{archive}: {member.name} is not a CIFAR python batch ({error}). Check that "
            "download.source (or download.url) points at the official python release."
        ) from error
    if not isinstance(batch, dict):
        raise ArchiveError(f"{archive}: {member.name} holds a {type(batch).__name__}, not a dict.")
    return batch


def _read_batch(
    archive: Path,
    release: Release,
    contents: TarContents,
    member: tarfile.TarInfo,
    num_classes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One batch's images (N, 32, 32, 3) and labels, checked against the release's classes."""
    batch = _load_pickle(archive, contents, member)
    where = f"{archive}: {release.folder}/{path_parts(member.name)[-1]}"
    if b"data" not in batch or release.label_key not in batch:
        raise ArchiveError(f"{where} lacks the key b'data' or {release.label_key!r}.")
    rows = np.asarray(batch[b"data"])
    labels = np.asarray(batch[release.label_key], dtype=np.int64)
    if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != 3 * IMAGE_SIZE**2:
        raise ArchiveError(
            f"{where} holds data of shape {rows.shape} and type {rows.dtype}, not uint8 rows "
            f"of {3 * IMAGE_SIZE**2} values."
        )
    if labels.shape != rows.shape[:1]:
        raise ArchiveError(f"{where} holds {len(rows)} images but {len(labels)} labels.")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ArchiveError(
            f"{where} has labels outside 0..{num_classes - 1}, the {num_classes} classes of "
            f"{release.folder}/{release.meta_file}."
        )
    # Each row stores the red, then green, then blue 32x32 plane: channels first.
    return rows.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1), labels

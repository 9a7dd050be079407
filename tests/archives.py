"""Small synthetic data archives for the tests, built in a temporary directory.

Each builder writes an archive in one of the layouts the download and preprocess stages
accept and returns a ``SyntheticData`` holding the archive's path and the arrays that
preprocessing it must give back (images as uint8 (N, 32, 32, 3), labels as int32), so
tests can check an exact round trip. Pixel values come from a seeded generator, so every
call with the same arguments builds the same bytes.

Import from tests as ``from archives import make_cifar10_archive`` (pytest puts the tests
directory on ``sys.path``).
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SIZE = 32
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# Deliberately not in alphabetical order: the label order must come from the meta file.
CIFAR100_CLASSES = tuple(f"fine_{index:02d}_{'zyxwvutsrq'[index % 10]}" for index in range(100))[
    ::-1
]
# Train and test images per class of the default image folder: unequal on purpose.
IMAGE_FOLDER_CLASSES = {"cat": (6, 3), "airplane": (4, 2), "dog": (2, 1)}


@dataclass(frozen=True, eq=False)
class SyntheticData:
    """An archive (or directory) and the arrays preprocessing must recover from it."""

    path: Path
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]


def random_images(count: int, seed: int) -> np.ndarray:
    """``count`` uint8 RGB images (count, 32, 32, 3) of seeded random pixels."""
    return np.random.default_rng(seed).integers(
        0, 256, (count, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8
    )


def add_bytes(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    """Add a regular file ``name`` holding ``payload`` to an open tar."""
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(payload))


def _cifar_batch(images: np.ndarray, labels: np.ndarray, label_key: bytes) -> bytes:
    """A batch pickled as the official release stores it: channel-first rows of 3072 bytes."""
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    batch = {
        b"batch_label": b"synthetic batch",
        label_key: [int(label) for label in labels],
        b"data": np.ascontiguousarray(rows),
        b"filenames": [f"image_{index}.png".encode() for index in range(len(images))],
    }
    return official_pickle(batch)


def official_pickle(value: object) -> bytes:
    """``value`` pickled the way the official release's files name numpy's functions.

    The release was pickled with numpy 1, whose array reconstructor lives in
    ``numpy.core.multiarray``; numpy 2 writes ``numpy._core.multiarray`` instead, so the
    name is rewritten to make the synthetic batches look like the real ones.
    """
    payload = pickle.dumps(value, protocol=2)
    return payload.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def make_cifar10_archive(
    directory: Path, images_per_batch: int = 10, test_images: int = 20
) -> SyntheticData:
    """A cifar-10-python.tar.gz look-alike: 5 training batches, a test batch, the meta file.

    Labels cycle through the 10 classes, so every class has the same number of images
    when the counts are multiples of 10.
    """
    train_count = 5 * images_per_batch
    train_images = random_images(train_count, seed=10)
    train_labels = (np.arange(train_count) % 10).astype(np.int32)
    test_images_array = random_images(test_images, seed=11)
    test_labels = ((np.arange(test_images) * 3) % 10).astype(np.int32)

    path = Path(directory) / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for index in range(5):
            part = slice(index * images_per_batch, (index + 1) * images_per_batch)
            add_bytes(
                tar,
                f"cifar-10-batches-py/data_batch_{index + 1}",
                _cifar_batch(train_images[part], train_labels[part], b"labels"),
            )
        add_bytes(
            tar,
            "cifar-10-batches-py/test_batch",
            _cifar_batch(test_images_array, test_labels, b"labels"),
        )
        meta = {
            b"label_names": [name.encode() for name in CIFAR10_CLASSES],
            b"num_cases_per_batch": images_per_batch,
        }
        add_bytes(tar, "cifar-10-batches-py/batches.meta", pickle.dumps(meta, protocol=2))
        add_bytes(tar, "cifar-10-batches-py/readme.html", b"<html>synthetic</html>")
    return SyntheticData(
        path, train_images, train_labels, test_images_array, test_labels, CIFAR10_CLASSES
    )


def make_cifar100_archive(
    directory: Path, train_count: int = 200, test_count: int = 100
) -> SyntheticData:
    """A cifar-100-python.tar.gz look-alike: train, test and meta with 100 fine labels."""
    train_images = random_images(train_count, seed=100)
    train_labels = (np.arange(train_count) % 100).astype(np.int32)
    test_images = random_images(test_count, seed=101)
    test_labels = ((np.arange(test_count) * 7) % 100).astype(np.int32)

    def batch(images: np.ndarray, labels: np.ndarray) -> bytes:
        rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
        content = {
            b"filenames": [f"image_{index}.png".encode() for index in range(len(images))],
            b"batch_label": b"synthetic",
            b"fine_labels": [int(label) for label in labels],
            b"coarse_labels": [int(label) // 5 for label in labels],
            b"data": np.ascontiguousarray(rows),
        }
        return official_pickle(content)

    path = Path(directory) / "cifar-100-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        add_bytes(tar, "cifar-100-python/train", batch(train_images, train_labels))
        add_bytes(tar, "cifar-100-python/test", batch(test_images, test_labels))
        meta = {
            b"fine_label_names": [name.encode() for name in CIFAR100_CLASSES],
            b"coarse_label_names": [f"coarse_{index}".encode() for index in range(20)],
        }
        add_bytes(tar, "cifar-100-python/meta", pickle.dumps(meta, protocol=2))
    return SyntheticData(
        path, train_images, train_labels, test_images, test_labels, CIFAR100_CLASSES
    )


def png_bytes(image: np.ndarray) -> bytes:
    """``image`` (H, W, 3) uint8 encoded as PNG, which is lossless."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def write_image_folder(
    root: Path, classes: dict[str, tuple[int, int]] | None = None, prefix: str = "images"
) -> SyntheticData:
    """Write ``[root/prefix]/{train,test}/<class>/NNNN.png`` and return the expected arrays.

    ``classes`` maps a class name to its (train, test) image counts. The expected arrays
    follow the order preprocessing uses: classes alphabetically, then file names.
    """
    classes = IMAGE_FOLDER_CLASSES if classes is None else classes
    base = Path(root) / prefix if prefix else Path(root)
    class_names = tuple(sorted(classes))
    expected = {}
    for split_index, split in enumerate(("train", "test")):
        images, labels = [], []
        for label, class_name in enumerate(class_names):
            count = classes[class_name][split_index]
            class_images = random_images(count, seed=1000 * split_index + label)
            folder = base / split / class_name
            folder.mkdir(parents=True, exist_ok=True)
            for index, image in enumerate(class_images):
                (folder / f"{index:04d}.png").write_bytes(png_bytes(image))
            images.append(class_images)
            labels.append(np.full(count, label, dtype=np.int32))
        expected[split] = (np.concatenate(images), np.concatenate(labels))
    return SyntheticData(
        Path(root),
        expected["train"][0],
        expected["train"][1],
        expected["test"][0],
        expected["test"][1],
        class_names,
    )


def make_image_folder_archive(
    directory: Path,
    classes: dict[str, tuple[int, int]] | None = None,
    prefix: str = "images",
    name: str = "images.tar.gz",
) -> SyntheticData:
    """An image-folder tar.gz of PNGs (see write_image_folder), packed in reverse order.

    Packing in reverse checks that preprocessing orders images itself rather than relying
    on the order of the archive's members.
    """
    tree = Path(directory) / f"{name}.tree"
    data = write_image_folder(tree, classes=classes, prefix=prefix)
    path = Path(directory) / name
    with tarfile.open(path, "w:gz") as tar:
        for file in sorted(tree.rglob("*"), reverse=True):
            if file.is_file():
                add_bytes(tar, file.relative_to(tree).as_posix(), file.read_bytes())
    return SyntheticData(
        path,
        data.train_images,
        data.train_labels,
        data.test_images,
        data.test_labels,
        data.class_names,
    )


def make_unsafe_archive(directory: Path, kind: str) -> Path:
    """A small valid image-folder tar.gz plus one unsafe member of the given ``kind``.

    Kinds: ``parent`` (a ``../evil`` path), ``inner_parent`` (a ``..`` that stays inside,
    ``train/../train/cat/evil``), ``absolute`` (``/tmp/evil``), ``symlink``,
    ``hardlink``, ``fifo`` and ``device`` (a character device).
    """
    path = Path(directory) / f"unsafe-{kind}.tar.gz"
    image = png_bytes(random_images(1, seed=5)[0])
    with tarfile.open(path, "w:gz") as tar:
        add_bytes(tar, "train/cat/0000.png", image)
        add_bytes(tar, "test/cat/0000.png", image)
        if kind == "parent":
            add_bytes(tar, "train/../../evil", b"escaped\n")
        elif kind == "inner_parent":
            add_bytes(tar, "train/../train/cat/evil", b"ambiguous\n")
        elif kind == "absolute":
            add_bytes(tar, "/tmp/evil", b"escaped\n")
        else:
            info = tarfile.TarInfo(f"train/cat/{kind}")
            if kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, "train/cat/0000.png"
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            elif kind == "device":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            else:
                raise ValueError(f"unknown unsafe member kind {kind!r}")
            tar.addfile(info)
    return path


UNSAFE_KINDS = ("parent", "inner_parent", "absolute", "symlink", "hardlink", "fifo", "device")


def make_evil_archive(directory: Path) -> Path:
    """An archive with a ``../evil`` member."""
    return make_unsafe_archive(directory, "parent")


def make_symlink_archive(directory: Path) -> Path:
    """An archive with a symbolic-link member."""
    return make_unsafe_archive(directory, "symlink")


def make_malicious_pickle_archive(directory: Path, marker: Path) -> Path:
    """A CIFAR-10 look-alike whose meta pickle would create the directory ``marker``.

    Loading it with a plain ``pickle.load`` calls ``os.mkdir(marker)``; a safe reader refuses.
    """

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    path = Path(directory) / "malicious.tar.gz"
    empty = {b"data": np.zeros((0, 3072), np.uint8), b"labels": []}
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{index}" for index in range(1, 6)] + ["test_batch"]:
            add_bytes(tar, f"cifar-10-batches-py/{name}", pickle.dumps(empty, protocol=2))
        add_bytes(
            tar,
            "cifar-10-batches-py/batches.meta",
            pickle.dumps({b"label_names": Payload()}, protocol=2),
        )
    return path


def prepare_with_defaults(archive: Path, **options) -> dict:
    """``lossbench.preprocess.prepare`` with the schema's defaults (params.yaml's one source) for
    the subset seed, the archive size limit and the label noise where ``options`` leaves them
    out; returns the counts."""
    from lossbench.pipeline.params import with_defaults
    from lossbench.preprocess import prepare

    preprocess_defaults = with_defaults("preprocess", {})
    defaults = {
        "subset_seed": preprocess_defaults["subset_seed"],
        "max_archive_bytes": with_defaults("download", {})["max_archive_bytes"],
        "label_noise": preprocess_defaults["label_noise"],
        "label_noise_mode": preprocess_defaults["label_noise_mode"],
    }
    return prepare(archive, **{**defaults, **options})

"""Decode the data archive into uint8 arrays, optionally a stratified subset of them.

In: the tar archive written by the download stage (any compression), read in place without
extracting it to disk, in one of three layouts chosen by ``data.dataset``:

* ``cifar10``: the official python release, ``cifar-10-batches-py/data_batch_1`` .. ``_5``,
  ``test_batch`` and ``batches.meta``;
* ``cifar100``: the official python release, ``cifar-100-python/train``, ``test`` and
  ``meta`` (the 100 fine labels are used);
* ``image_folder``: ``[<folder>/]train/<class>/<image>`` and ``[<folder>/]test/<class>/<image>``
  with 32x32 JPEG or PNG images; labels number the class folders in alphabetical order
  (for CIFAR-10 that is the official order, airplane .. truck).

Out: a directory holding

* ``train_images.npy`` and ``test_images.npy``: uint8 arrays of shape (N, 32, 32, 3), RGB,
  values 0..255 (scaling to [0, 1] is the training input pipeline's job);
* ``train_labels.npy`` and ``test_labels.npy``: int32 arrays of shape (N,), in the archive's
  order for the CIFAR releases (the order the paper trained in, unshuffled); image-folder
  training images in one fixed order seeded by ``data.subset_seed`` (``image_folder_order``),
  test images grouped by class;
* ``classes.json``: the class names in label order;

and a small JSON of images per class (a plain output that git tracks)::

    {"train": {"total": 50000, "per_class": {"airplane": 5000, ...}}, "test": {...}}

Both are written under temporary names beside their destinations and renamed once
complete. ``load_prepared`` reads the directory back, naming any damaged file.

Refused, from the archive's index before any image is decoded: fewer than 2 classes, and
subset sizes larger than the split or too small to keep every class in the subset.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import shutil
import tarfile
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from lossbench.atomic import write_json
from lossbench.archive import ArchiveError, TarContents, read_archive
# The prepared layout and its reader live in lossbench.prepared, shared with train and evaluate;
# they are re-exported here for callers that think of them as this stage's output.
from lossbench.prepared import IMAGE_SIZE, PREPARED_FILES, SPLITS, PreparedData, load_prepared  # noqa: F401

logger = logging.getLogger(__name__)

DATASETS = ("cifar10", "cifar100", "image_folder")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{index}" for index in range(1, 6))
CIFAR100_FOLDER = "cifar-100-python"

LAYOUT_DESCRIPTIONS = {
    "cifar10": (
        f"the official CIFAR-10 python release ({CIFAR10_FOLDER}/data_batch_1..5, test_batch)"
    ),
    "cifar100": f"the official CIFAR-100 python release ({CIFAR100_FOLDER}/train, test, meta)",
    "image_folder": (
        "an image folder ([<folder>/]train/<class>/<image>, [<folder>/]test/<class>/<image>)"
    ),
}

# Below this many images, starting worker processes costs more than it saves.
PARALLEL_MINIMUM_IMAGES = 4096
DECODE_CHUNK_IMAGES = 2048


@dataclass(frozen=True, eq=False)
class _Split:
    images: np.ndarray
    labels: np.ndarray


def run(data_params: dict, archive: Path, output_dir: Path, counts_path: Path) -> dict:
    """Prepare the archive as params.yaml's ``data`` section says; return the counts."""
    return prepare(
        Path(archive),
        dataset=data_params["dataset"],
        output_dir=Path(output_dir),
        counts_path=Path(counts_path),
        train_size=data_params.get("train_size"),
        test_size=data_params.get("test_size"),
        subset_seed=data_params.get("subset_seed", 0),
    )


def prepare(
    archive: Path,
    *,
    dataset: str,
    output_dir: Path,
    counts_path: Path,
    train_size: int | None = None,
    test_size: int | None = None,
    subset_seed: int = 0,
    workers: int | None = None,
) -> dict:
    """Decode ``archive`` into ``output_dir`` and write ``counts_path``; return the counts.

    ``train_size`` and ``test_size`` (None = every image) draw stratified subsets with
    ``numpy.random.default_rng(subset_seed)``, one generator per split so that changing
    one size leaves the other split's subset as it was. ``workers`` is the number of
    processes decoding image-folder images (None = the CPUs this process may use).
    """
    archive, output_dir, counts_path = Path(archive), Path(output_dir), Path(counts_path)
    if dataset not in DATASETS:
        raise ValueError(f"data.dataset is {dataset!r}; it must be one of {', '.join(DATASETS)}.")
    # read_archive refuses unsafe members (links, devices, paths leaving the archive) here
    # too, although nothing is extracted: the archive may not have come through download.
    contents = read_archive(archive)
    files = _regular_files(contents)
    _check_layout(archive, dataset, files)
    sizes = {"train": train_size, "test": test_size}
    if dataset == "image_folder":
        # The sizes are checked, and the subsets drawn, from the archive's listing: only the
        # chosen images are decoded.
        class_names, splits = _read_image_folder(
            archive, contents, files, sizes=sizes, subset_seed=subset_seed, workers=workers
        )
    else:
        # The official batches hold labels and pixels in one pickle: the sizes are checked
        # once the labels are read, before anything is reshaped or written.
        class_names, splits = _read_cifar(archive, dataset, contents, files)
        check_sizes(archive, class_names, {split: splits[split].labels for split in SPLITS}, sizes)
        for split, size in sizes.items():
            if size is not None:
                indices = stratified_subset(
                    splits[split].labels, size, seed=subset_seed, params_key=f"data.{split}_size"
                )
                splits[split] = _Split(splits[split].images[indices], splits[split].labels[indices])
    del contents  # The decompressed archive can be large (180 MB for CIFAR-10); free it early.

    if dataset == "image_folder":
        # Image folders are read grouped by class. Training without shuffling (the paper's
        # setting, train.shuffle: false) would then see class-sorted batches, which CIFAR's
        # own archive never gives: store one fixed, seeded order instead, made once here.
        order = image_folder_order(len(splits["train"].labels), subset_seed)
        splits["train"] = _Split(splits["train"].images[order], splits["train"].labels[order])

    counts = {
        split: {
            "total": len(splits[split].labels),
            "per_class": {
                name: int(count)
                for name, count in zip(
                    class_names, np.bincount(splits[split].labels, minlength=len(class_names))
                )
            },
        }
        for split in SPLITS
    }
    _write_prepared(output_dir, splits, class_names)
    write_json(counts_path, counts)
    logger.info(
        "Prepared %s training and %s test images of %d classes in %s.",
        f"{counts['train']['total']:,}",
        f"{counts['test']['total']:,}",
        len(class_names),
        output_dir,
    )
    return counts


def image_folder_order(count: int, seed: int) -> np.ndarray:
    """The fixed order in which image-folder training images are stored: seeded, not sorted."""
    return np.random.default_rng([seed, 2016]).permutation(count)


def stratified_subset(
    labels: np.ndarray, size: int, *, seed: int, params_key: str = "size"
) -> np.ndarray:
    """Sorted indices of ``size`` items drawn per class in proportion to the class sizes.

    Each class gets the floor of its proportional share; the images left over go one each
    to the classes with the largest remainders (ties to the lower label), so per-class
    counts are as equal as proportional allocation allows. The draw within each class uses
    ``numpy.random.default_rng(seed)``. Sorting keeps the original order of the images.
    """
    labels = np.asarray(labels)
    _check_size(labels, size, params_key)
    classes, quotas = _stratified_quotas(labels, size)

    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(labels == label), size=int(quota), replace=False)
        for label, quota in zip(classes, quotas)
    ]
    return np.sort(np.concatenate(chosen))


def _check_size(labels: np.ndarray, size: int, params_key: str) -> None:
    available = len(labels)
    if size > available:
        raise ValueError(
            f"{params_key} is {size:,}, but the archive has only {available:,} such images. "
            f"Set {params_key} to at most {available:,}, or to null for all of them."
        )
    if size < 1:
        raise ValueError(f"{params_key} is {size}; it must be at least 1 (or null for all images).")


def _stratified_quotas(labels: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(classes present, images drawn from each) of a stratified subset of ``size``."""
    available = len(labels)
    classes, class_counts = np.unique(labels, return_counts=True)
    # Integer arithmetic keeps the allocation exact: share = size * count / available.
    quotas = size * class_counts // available
    remainders = size * class_counts % available
    leftover = size - int(quotas.sum())
    # Stable sort on the negated remainder: largest remainders first, ties to lower labels.
    order = np.argsort(-remainders, kind="stable")
    quotas[order[:leftover]] += 1
    return classes, quotas


def check_sizes(
    archive: Path,
    class_names: Sequence[str],
    labels: dict[str, np.ndarray],
    sizes: dict[str, int | None],
) -> None:
    """Refuse a dataset or subset sizes that cannot make a meaningful study, before decoding.

    ``labels`` holds each split's labels as read from the archive's index, ``sizes`` the
    subset sizes (None = every image). A classifier needs at least two classes, and a
    stratified subset must keep every class the split holds: otherwise the run trains,
    evaluates and compares on fewer classes than counts.json and the report announce.
    """
    if len(class_names) < 2:
        shown = ", ".join(class_names) or "none"
        raise ValueError(
            f"{archive} holds {len(class_names)} class ({shown}); a classifier needs at least "
            "2. Give an image folder one train/<class>/ and test/<class>/ folder per class, or "
            "point data.source at another archive."
        )
    for split in SPLITS:
        size = sizes.get(split)
        if size is None:
            continue
        params_key = f"data.{split}_size"
        _check_size(labels[split], size, params_key)
        classes, quotas = _stratified_quotas(labels[split], size)
        if size < len(classes):
            raise ValueError(
                f"{params_key} is {size}, fewer than the {len(classes)} classes of the "
                f"archive's {split} images, so a stratified subset cannot keep every class. "
                f"Set {params_key} to at least {len(classes)}, or to null for all images."
            )
        left_out = [class_names[label] for label, quota in zip(classes, quotas) if quota == 0]
        if left_out:
            raise ValueError(
                f"{params_key} is {size}: too few for a stratified subset to keep the smallest "
                f"classes ({', '.join(left_out)}), which would get no {split} images. Raise "
                f"{params_key}, or set it to null for all images."
            )


# ---------------------------------------------------------------------------------------
# Reading the archive
# ---------------------------------------------------------------------------------------


def _path_parts(name: str) -> tuple[str, ...]:
    """The components of a member's path, without empty and "." ones.

    String operations rather than pathlib, which is several times slower: this runs a few
    times for each of up to 60,000 members.
    """
    return tuple(part for part in name.split("/") if part not in ("", "."))


def _regular_files(contents: TarContents) -> dict[str, tarfile.TarInfo]:
    """The archive's regular files by normalised path (a later duplicate wins, as in tar)."""
    return {
        "/".join(_path_parts(member.name)): member for member in contents.members if member.isfile()
    }


def _layouts_found(files: dict[str, tarfile.TarInfo]) -> list[str]:
    found = []
    folders = {name.rpartition("/")[0].rpartition("/")[2] for name in files}
    if CIFAR10_FOLDER in folders:
        found.append("cifar10")
    if CIFAR100_FOLDER in folders:
        found.append("cifar100")
    if any(_image_folder_parts(name) is not None for name in files):
        found.append("image_folder")
    return found


def _check_layout(archive: Path, dataset: str, files: dict[str, tarfile.TarInfo]) -> None:
    found = _layouts_found(files)
    if dataset in found:
        return
    if found:
        raise ValueError(
            f"data.dataset is {dataset!r}, but {archive} is laid out as "
            f"{LAYOUT_DESCRIPTIONS[found[0]]}. Set data.dataset: {found[0]} in params.yaml, or "
            f"point data.source at {LAYOUT_DESCRIPTIONS[dataset]}."
        )
    raise ValueError(
        f"{archive} holds no dataset layout lossbench knows. Expected "
        f"{LAYOUT_DESCRIPTIONS[dataset]} for data.dataset {dataset!r}; the layouts are: "
        + "; ".join(f"{name}: {text}" for name, text in LAYOUT_DESCRIPTIONS.items())
        + "."
    )


# ---------------------------------------------------------------------------------------
# The official CIFAR python releases
# ---------------------------------------------------------------------------------------


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays.

    A pickle can run arbitrary code when loaded, and data.source may point at any archive;
    the CIFAR batches need nothing beyond dicts, lists, bytes and numpy arrays.
    """

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


def _load_pickle(archive: Path, contents: TarContents, member: tarfile.TarInfo) -> dict:
    try:
        batch = _ArrayUnpickler(io.BytesIO(contents.member_bytes(member)), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise ArchiveError(
            f"{archive}: {member.name} is not a CIFAR python batch ({error}). Check that "
            "data.source (or data.url) points at the official python release."
        ) from error
    if not isinstance(batch, dict):
        raise ArchiveError(f"{archive}: {member.name} holds a {type(batch).__name__}, not a dict.")
    return batch


def _read_cifar(
    archive: Path, dataset: str, contents: TarContents, files: dict[str, tarfile.TarInfo]
) -> tuple[list[str], dict[str, _Split]]:
    if dataset == "cifar10":
        folder, label_key, names_key = CIFAR10_FOLDER, b"labels", b"label_names"
        batch_files = {"train": CIFAR10_TRAIN_BATCHES, "test": ("test_batch",)}
        meta_file = "batches.meta"
    else:
        folder, label_key, names_key = CIFAR100_FOLDER, b"fine_labels", b"fine_label_names"
        batch_files = {"train": ("train",), "test": ("test",)}
        meta_file = "meta"
    by_leaf = {
        parts[-1]: member
        for name, member in files.items()
        if len(parts := _path_parts(name)) >= 2 and parts[-2] == folder
    }
    needed = [*batch_files["train"], *batch_files["test"], meta_file]
    missing = [name for name in needed if name not in by_leaf]
    if missing:
        raise ArchiveError(
            f"{archive} lacks {', '.join(f'{folder}/{name}' for name in missing)} of the "
            f"official {dataset} release. Delete it and run `lossbench download` again."
        )

    meta = _load_pickle(archive, contents, by_leaf[meta_file])
    if names_key not in meta:
        raise ArchiveError(f"{archive}: {folder}/{meta_file} lacks the key {names_key!r}.")
    class_names = [
        name.decode("utf-8") if isinstance(name, bytes) else str(name) for name in meta[names_key]
    ]

    splits = {}
    for split, batch_names in batch_files.items():
        images, labels = [], []
        for batch_name in batch_names:
            batch = _load_pickle(archive, contents, by_leaf[batch_name])
            where = f"{archive}: {folder}/{batch_name}"
            if b"data" not in batch or label_key not in batch:
                raise ArchiveError(f"{where} lacks the key b'data' or {label_key!r}.")
            rows = np.asarray(batch[b"data"])
            batch_labels = np.asarray(batch[label_key], dtype=np.int64)
            if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != 3 * IMAGE_SIZE**2:
                raise ArchiveError(
                    f"{where} holds data of shape {rows.shape} and type {rows.dtype}, not "
                    f"uint8 rows of {3 * IMAGE_SIZE**2} values."
                )
            if batch_labels.shape != rows.shape[:1]:
                raise ArchiveError(
                    f"{where} holds {len(rows)} images but {len(batch_labels)} labels."
                )
            num_classes = len(class_names)
            if len(batch_labels) and (batch_labels.min() < 0 or batch_labels.max() >= num_classes):
                raise ArchiveError(
                    f"{where} has labels outside 0..{num_classes - 1}, the {num_classes} classes "
                    f"of {folder}/{meta_file}."
                )
            # Each row stores the red, then green, then blue 32x32 plane: channels first.
            images.append(rows.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1))
            labels.append(batch_labels)
        splits[split] = _Split(
            np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels).astype(np.int32)
        )
    return class_names, splits


# ---------------------------------------------------------------------------------------
# Image folders
# ---------------------------------------------------------------------------------------


def _image_folder_parts(name: str) -> tuple[str, str, str, str] | None:
    """(prefix, split, class, filename) of an image-folder image path, else None."""
    parts = _path_parts(name)
    if not parts or parts[-1].startswith(".") or not parts[-1].lower().endswith(IMAGE_SUFFIXES):
        return None
    if len(parts) == 3 and parts[0] in SPLITS:
        return ("", *parts)
    if len(parts) == 4 and parts[1] in SPLITS:
        return parts
    return None


def _read_image_folder(
    archive: Path,
    contents: TarContents,
    files: dict[str, tarfile.TarInfo],
    *,
    sizes: dict[str, int | None],
    subset_seed: int,
    workers: int | None,
) -> tuple[list[str], dict[str, _Split]]:
    """Class names and each split's stratified subset (``sizes``, None = all), decoded.

    The labels come from the member paths, so the sizes are checked and the subsets drawn
    before any image is decoded; only the chosen images are.
    """
    entries = {split: [] for split in SPLITS}
    prefixes = set()
    for name, member in files.items():
        parts = _image_folder_parts(name)
        if parts is None:
            continue
        prefix, split, class_name, _filename = parts
        prefixes.add(prefix)
        entries[split].append((class_name, name, member))
    if len(prefixes) > 1:
        shown = ", ".join(repr(prefix or "(top level)") for prefix in sorted(prefixes))
        raise ValueError(
            f"{archive} holds train/ and test/ folders under several top-level folders "
            f"({shown}); an image folder needs exactly one. Repack it with one of them."
        )

    class_names = sorted({class_name for class_name, _name, _member in entries["train"]})
    test_classes = {class_name for class_name, _name, _member in entries["test"]}
    if not class_names or not entries["test"]:
        raise ValueError(
            f"{archive} has {len(entries['train'])} training and {len(entries['test'])} test "
            "images; an image folder needs both train/<class>/<image> and test/<class>/<image>."
        )
    unknown = sorted(test_classes - set(class_names))
    if unknown:
        raise ValueError(
            f"{archive} has test classes with no training images: {', '.join(unknown)}. "
            "Every test/<class> folder needs a matching train/<class> folder."
        )
    label_of = {class_name: label for label, class_name in enumerate(class_names)}

    listed, labels = {}, {}
    for split in SPLITS:
        # Sorting by (class, path) makes the order independent of how the tar was packed.
        listed[split] = sorted(entries[split], key=lambda entry: (entry[0], entry[1]))
        labels[split] = np.array(
            [label_of[class_name] for class_name, _n, _m in listed[split]], dtype=np.int32
        )
    check_sizes(archive, class_names, labels, sizes)

    splits = {}
    for split in SPLITS:
        chosen = listed[split]
        if sizes.get(split) is not None:
            indices = stratified_subset(
                labels[split], sizes[split], seed=subset_seed, params_key=f"data.{split}_size"
            )
            chosen = [chosen[index] for index in indices]
            labels[split] = labels[split][indices]
        names = [name for _class_name, name, _member in chosen]
        blobs = [contents.member_bytes(member) for _class_name, _name, member in chosen]
        images = _decode_images(blobs, names, workers=workers)
        splits[split] = _Split(images, labels[split])
    return class_names, splits


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # Not every platform has sched_getaffinity (macOS, Windows).
        return os.cpu_count() or 1


def _decode_images(
    blobs: Sequence[bytes], names: Sequence[str], *, workers: int | None
) -> np.ndarray:
    """Decode encoded images into one (N, 32, 32, 3) uint8 array, in chunks across processes."""
    workers = _usable_cpus() if workers is None else workers
    images = np.empty((len(blobs), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    starts = range(0, len(blobs), DECODE_CHUNK_IMAGES)
    chunks = [
        (blobs[start : start + DECODE_CHUNK_IMAGES], names[start : start + DECODE_CHUNK_IMAGES])
        for start in starts
    ]
    if workers <= 1 or len(blobs) < PARALLEL_MINIMUM_IMAGES:
        results = map(_decode_chunk, chunks)
        for start, decoded in zip(starts, results):
            images[start : start + len(decoded)] = decoded
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
            for start, decoded in zip(starts, pool.map(_decode_chunk, chunks)):
                images[start : start + len(decoded)] = decoded
    return images


def _decode_chunk(chunk: tuple[Sequence[bytes], Sequence[str]]) -> np.ndarray:
    """Decode one chunk of images; a module-level function so worker processes can run it."""
    from PIL import Image, UnidentifiedImageError

    blobs, names = chunk
    images = np.empty((len(blobs), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for index, (blob, name) in enumerate(zip(blobs, names)):
        try:
            with Image.open(io.BytesIO(blob), formats=("JPEG", "PNG")) as image:
                # The size is known from the header: check it before decoding any pixels.
                if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                    raise ValueError(
                        f"The image {name} is {image.size[0]}x{image.size[1]} pixels; every "
                        f"image must be {IMAGE_SIZE}x{IMAGE_SIZE}. Resize it or remove it."
                    )
                if image.mode != "RGB":
                    image = image.convert("RGB")
                images[index] = np.asarray(image)
        except (UnidentifiedImageError, OSError, SyntaxError) as error:
            raise ValueError(
                f"The image {name} cannot be decoded ({error}). Replace it or remove it."
            ) from error
    return images


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------


def _write_prepared(output_dir: Path, splits: dict[str, _Split], class_names: list[str]) -> None:
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{output_dir.name}.", suffix=".tmp", dir=output_dir.parent)
    )
    try:
        for split in SPLITS:
            np.save(staging / f"{split}_images.npy", splits[split].images, allow_pickle=False)
            np.save(staging / f"{split}_labels.npy", splits[split].labels, allow_pickle=False)
        with (staging / "classes.json").open("w") as handle:
            json.dump(list(class_names), handle, indent=2)
            handle.write("\n")
        # mkdtemp creates the folder readable by its owner only; give it the usual mode.
        os.chmod(staging, 0o755)
        if output_dir.exists():
            # Move the old directory aside first so that output_dir is never half old, half new.
            retired = Path(
                tempfile.mkdtemp(
                    prefix=f".{output_dir.name}.", suffix=".old", dir=output_dir.parent
                )
            )
            os.replace(output_dir, retired / output_dir.name)
            os.replace(staging, output_dir)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise



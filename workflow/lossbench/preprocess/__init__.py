"""Decode the data archive into uint8 arrays, optionally a stratified subset of them.

In: the tar archive written by the download stage (any compression), read in place without
extracting it to disk, in one of the layouts of the registry ``DATASETS`` (name ->
``DatasetSpec``: the layout in words, how to recognise it, its reader), chosen by
``preprocess.dataset``:

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
  training images in one fixed order seeded by ``preprocess.subset_seed`` (``image_folder_order``),
  test images grouped by class;
* ``classes.json``: the class names in label order;
* with ``preprocess.label_noise`` > 0, ``train_clean_labels.npy``: the training labels before
  the noise (``train_labels.npy`` then holds the noisy ones that training reads; the labels
  that differ are the ones flipped; ``lossbench.preprocess.label_noise`` defines the noise);
* ``manifest.json``: each of those files' size, SHA-256 and MD5, which the stages that read
  them check first (``lossbench.io.prepared``);

and a small JSON of images per class (a plain output that git tracks), with the label noise
asked for and realised (``label_noise.noise_record``; per-class training counts are of the
labels as stored, i.e. noisy)::

    {"train": {"total": 50000, "per_class": {"airplane": 5000, ...}}, "test": {...},
     "label_noise": {"rate": 0.4, "mode": "symmetric", "images": 50000, "changed": 20000,
                     "realised_rate": 0.4, "changed_per_class": {"airplane": 2000, ...}}}

Both are written under temporary names beside their destinations and renamed once
complete. ``load_prepared`` reads the directory back, naming any damaged file.

Refused, from the archive's index before any image is decoded: fewer than 2 classes, and
subset sizes larger than the split or too small to keep every class in the subset; before
anything is written: a label-noise rate outside [0, 1) or one that would leave a class no
correctly labelled image.
"""

from __future__ import annotations

import logging
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from lossbench.io.archive import TarContents, read_archive, regular_files
from lossbench.io.atomic import write_json
from lossbench.io.prepared import SPLITS, Split, write_prepared
from lossbench.preprocess.cifar_release import CIFAR10_FOLDER, CIFAR100_FOLDER, RELEASES, read_cifar
from lossbench.preprocess.image_folder import decode_images, image_folder_parts, list_image_folder
from lossbench.preprocess.label_noise import add_label_noise, check_rate, noise_record

# stratified_subset is imported for callers that draw a subset as preprocess does (tests).
from lossbench.preprocess.subsets import check_sizes, draw_subsets, stratified_subset  # noqa: F401

logger = logging.getLogger(__name__)

def run(preprocess_params: dict, archive: Path, output_dir: Path, counts_path: Path,
        max_archive_bytes: int) -> dict:
    """Prepare the archive as params.yaml's ``preprocess`` section says; return the counts.

    ``max_archive_bytes`` is ``download.max_archive_bytes``: the archive may hold at most
    that many bytes decompressed (a bomb is refused in seconds, with little memory)."""
    return prepare(
        Path(archive),
        dataset=preprocess_params["dataset"],
        output_dir=Path(output_dir),
        counts_path=Path(counts_path),
        train_size=preprocess_params.get("train_size"),
        test_size=preprocess_params.get("test_size"),
        subset_seed=preprocess_params["subset_seed"],
        max_archive_bytes=max_archive_bytes,
        label_noise=preprocess_params["label_noise"],
        label_noise_mode=preprocess_params["label_noise_mode"],
    )


def prepare(
    archive: Path,
    *,
    dataset: str,
    output_dir: Path,
    counts_path: Path,
    train_size: int | None = None,
    test_size: int | None = None,
    subset_seed: int,
    max_archive_bytes: int,
    label_noise: float,
    label_noise_mode: str,
    workers: int | None = None,
) -> dict:
    """Decode ``archive`` into ``output_dir`` and write ``counts_path``; return the counts.

    ``train_size`` and ``test_size`` (None = every image) draw stratified subsets with
    ``numpy.random.default_rng(subset_seed)``, one generator per split so that changing
    one size leaves the other split's subset as it was. ``workers`` is the number of
    processes decoding image-folder images (None = the CPUs this process may use).
    ``label_noise`` and ``label_noise_mode`` replace training labels
    (`lossbench.preprocess.label_noise`). ``subset_seed``, ``max_archive_bytes`` and the label
    noise have no defaults here: params.yaml's schema is their one source (``run`` passes them).
    """
    archive, output_dir, counts_path = Path(archive), Path(output_dir), Path(counts_path)
    spec = dataset_spec(dataset)
    check_rate(label_noise, label_noise_mode)
    # read_archive refuses unsafe members (links, devices, paths leaving the archive) here
    # too, although nothing is extracted: the archive may not have come through download.
    contents = read_archive(archive, max_archive_bytes)
    files = regular_files(contents)
    _check_layout(archive, dataset, files)
    class_names, splits = spec.read(archive, contents, files, sizes={"train": train_size, "test": test_size},
                                    subset_seed=subset_seed, workers=workers)
    del contents  # The decompressed archive can be large (180 MB for CIFAR-10); free it early.
    clean_labels = splits["train"].labels
    noisy = add_label_noise(clean_labels, class_names, label_noise, label_noise_mode, subset_seed)
    splits["train"] = Split(splits["train"].images, noisy)

    counts = {split: _class_counts(splits[split].labels, class_names) for split in SPLITS}
    counts["label_noise"] = noise_record(clean_labels, noisy, class_names, label_noise, label_noise_mode)
    write_prepared(output_dir, splits, class_names, clean_labels if label_noise > 0 else None)
    write_json(counts_path, counts)
    logger.info(
        "Prepared %s training and %s test images of %d classes in %s; %.2f %% of the training "
        "labels replaced (preprocess.label_noise %s, %s).",
        f"{counts['train']['total']:,}", f"{counts['test']['total']:,}", len(class_names),
        output_dir, 100 * counts["label_noise"]["realised_rate"], label_noise, label_noise_mode,
    )
    return counts


def _class_counts(labels: np.ndarray, class_names: Sequence[str]) -> dict:
    """{"total": images, "per_class": {name: images}} of one split's labels."""
    per_class = np.bincount(labels, minlength=len(class_names))
    return {"total": len(labels), "per_class": {name: int(count) for name, count in zip(class_names, per_class)}}


def _read_cifar_release(
    archive: Path,
    contents: TarContents,
    files: dict[str, tarfile.TarInfo],
    *,
    sizes: dict[str, int | None],
    subset_seed: int,
    workers: int | None,
    dataset: str,
) -> tuple[list[str], dict[str, Split]]:
    """Class names and each split's stratified subset (``sizes``, None = all) of a release.

    The official batches hold labels and pixels in one pickle: the sizes are checked once
    the labels are read, before anything is reshaped or written. ``workers`` is unused: one
    pickle per batch leaves nothing to decode in parallel.
    """
    class_names, splits = read_cifar(archive, dataset, contents, files)
    labels = {split: splits[split].labels for split in SPLITS}
    check_sizes(archive, class_names, labels, sizes)
    for split, indices in draw_subsets(labels, sizes, subset_seed).items():
        if indices is not None:
            splits[split] = splits[split].take(indices)
    return class_names, splits


def _read_image_folder(
    archive: Path,
    contents: TarContents,
    files: dict[str, tarfile.TarInfo],
    *,
    sizes: dict[str, int | None],
    subset_seed: int,
    workers: int | None,
) -> tuple[list[str], dict[str, Split]]:
    """Class names and each split's stratified subset (``sizes``, None = all), decoded.

    The labels come from the member paths, so the sizes are checked and the subsets drawn
    before any image is decoded; only the chosen images are.
    """
    class_names, listings = list_image_folder(archive, files)
    labels = {split: listings[split].labels for split in SPLITS}
    check_sizes(archive, class_names, labels, sizes)
    splits = {}
    for split, indices in draw_subsets(labels, sizes, subset_seed).items():
        listing = listings[split] if indices is None else listings[split].take(indices)
        blobs = [contents.member_bytes(member) for member in listing.members]
        splits[split] = Split(decode_images(blobs, listing.names, workers=workers), listing.labels)
    # Image folders are read grouped by class. Training without shuffling (the paper's
    # setting, train.shuffle: false) would then see class-sorted batches, which CIFAR's
    # own archive never gives: store one fixed, seeded order instead, made once here.
    order = image_folder_order(len(splits["train"].labels), subset_seed)
    splits["train"] = splits["train"].take(order)
    return class_names, splits


def image_folder_order(count: int, seed: int) -> np.ndarray:
    """The fixed order in which image-folder training images are stored: seeded, not sorted."""
    return np.random.default_rng([seed, 2016]).permutation(count)


# ---------------------------------------------------------------------------------------
# The archive's layout
# ---------------------------------------------------------------------------------------


def _layouts_found(files: dict[str, tarfile.TarInfo]) -> list[str]:
    """The registered datasets whose layout ``files`` (the archive's regular files) hold."""
    return [name for name, spec in DATASETS.items() if spec.found(files)]


def _check_layout(archive: Path, dataset: str, files: dict[str, tarfile.TarInfo]) -> None:
    found = _layouts_found(files)
    if dataset in found:
        return
    if found:
        raise ValueError(
            f"preprocess.dataset is {dataset!r}, but {archive} is laid out as "
            f"{DATASETS[found[0]].layout}. Set preprocess.dataset: {found[0]} in params.yaml, or "
            f"point download.source at {DATASETS[dataset].layout}."
        )
    raise ValueError(
        f"{archive} holds no dataset layout lossbench knows. Expected "
        f"{DATASETS[dataset].layout} for preprocess.dataset {dataset!r}; the layouts are: "
        + "; ".join(f"{name}: {spec.layout}" for name, spec in DATASETS.items())
        + "."
    )


# ---------------------------------------------------------------------------------------
# The registry of datasets
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSpec:
    """One value of ``preprocess.dataset``: an archive layout and its reader.

    Attributes:
        name: the registry key, as written in params.yaml.
        layout: the layout in words, for error messages ("the official CIFAR-10 release ...").
        found: ``found(files) -> bool``, whether the archive's regular files (name -> TarInfo)
            are laid out so; read from the index only, nothing decoded.
        read: ``read(archive, contents, files, *, sizes, subset_seed, workers)`` -> (class
            names in label order, {"train": Split, "test": Split}) with uint8 images of shape
            (N, 32, 32, 3) and int32 labels, each split a stratified subset of ``sizes[split]``
            images (None = all; ``subsets.check_sizes`` and ``draw_subsets`` make it).
    """

    name: str
    layout: str
    found: Callable[[dict[str, tarfile.TarInfo]], bool]
    read: Callable[..., tuple[list[str], dict[str, Split]]]


def _holds_folder(folder: str) -> Callable[[dict[str, tarfile.TarInfo]], bool]:
    """``found`` for a release whose files sit in a folder of that name (at any depth)."""
    return lambda files: folder in {name.rpartition("/")[0].rpartition("/")[2] for name in files}


# Adding a dataset: a reader with ``DatasetSpec.read``'s signature (in a module of its own
# beside cifar_release.py and image_folder.py) and one entry here; the enum of
# ``preprocess.dataset`` in workflow/schemas/params.schema.yaml lists the same names (a test
# checks it).
DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("cifar10", f"the official CIFAR-10 python release ({CIFAR10_FOLDER}/data_batch_1..5, "
                    "test_batch)", _holds_folder(RELEASES["cifar10"].folder),
                    partial(_read_cifar_release, dataset="cifar10")),
        DatasetSpec("cifar100", f"the official CIFAR-100 python release ({CIFAR100_FOLDER}/train, test, meta)",
                    _holds_folder(RELEASES["cifar100"].folder), partial(_read_cifar_release, dataset="cifar100")),
        DatasetSpec("image_folder", "an image folder ([<folder>/]train/<class>/<image>, "
                    "[<folder>/]test/<class>/<image>)",
                    lambda files: any(image_folder_parts(name) is not None for name in files),
                    _read_image_folder),
    )
}


def dataset_spec(name: str) -> DatasetSpec:
    """The DatasetSpec registered under ``name``; a ValueError naming the registered ones."""
    if name not in DATASETS:
        raise ValueError(f"preprocess.dataset is {name!r}; it must be one of {', '.join(DATASETS)}.")
    return DATASETS[name]

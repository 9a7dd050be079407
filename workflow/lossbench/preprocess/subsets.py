"""Stratified subsets of a split: which images a `preprocess.train_size` / `test_size` keeps.

In:  a split's labels as read from the archive's index (before any image is decoded), the
     subset size asked for and `preprocess.subset_seed`.
Out: sorted indices of the images kept (`stratified_subset`, `draw_subsets`), or a ValueError
     naming the params.yaml key when the sizes cannot make a meaningful study (`check_sizes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lossbench.io.prepared import SPLITS


def draw_subsets(
    labels: dict[str, np.ndarray], sizes: dict[str, int | None], subset_seed: int
) -> dict[str, np.ndarray | None]:
    """Each split's stratified subset as sorted indices, or None where it is used whole."""
    return {
        split: None
        if sizes.get(split) is None
        else stratified_subset(
            labels[split], sizes[split], seed=subset_seed, params_key=f"preprocess.{split}_size"
        )
        for split in SPLITS
    }


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
            "point download.source at another archive."
        )
    for split in SPLITS:
        size = sizes.get(split)
        if size is None:
            continue
        params_key = f"preprocess.{split}_size"
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

"""Label noise: replace a fraction of the training labels with wrong ones, once, in preprocess.

In:  the training labels (int32, as preprocess stores them), the class names,
     `preprocess.label_noise` (the rate, 0 <= rate < 1), `preprocess.label_noise_mode`
     (`symmetric` or `pairs`) and `preprocess.subset_seed`.
Out: `add_label_noise`: the noisy training labels (a new array; the clean ones are kept by
     preprocess beside them as `train_clean_labels.npy`), and `noise_record`: what counts.json
     records of it (the rate asked for, the labels changed, the realised rate, per class).

Definitions (the params comment says the same):
- `symmetric` (Ghosh et al. 2017; Zhang & Sabuncu 2018): in each class, round(rate x the
  class's images) images, drawn at random, get a label drawn uniformly from the *other*
  classes. The rate is therefore the fraction of training labels that differ from the clean
  ones (up to rounding per class): 0.4 changes 40 % of them. (Papers that draw the new label
  from all classes, the true one included, change only rate x (K - 1) / K of them: 36 % for
  0.4 and 10 classes.)
- `pairs` (Patrini et al., CVPR 2017, CIFAR-10): round(rate x the class's images) images of
  each of five classes get the label of a similar class: truck -> automobile, bird ->
  airplane, deer -> horse, cat -> dog, dog -> cat. The other five classes keep every label,
  so the fraction of all labels changed is about rate / 2. It needs those class names.
- Stratified: every class loses the same share of its own labels, so each keeps
  n - round(rate x n) >= 1 correctly labelled images; a rate that would leave a class none is
  refused. Rates at which a wrong label becomes as likely as the true one ((K - 1) / K for
  symmetric, 0.5 for pairs) are allowed, with a warning: the clean labels can then no longer
  be told from the noisy ones, by any loss.
- Seeded by `numpy.random.default_rng([subset_seed, 1729])`, apart from the subset draws, and
  applied after the subsets and the image-folder order: the same parameters give the same
  noisy labels on every machine, made once, so training (and a resumed training) just reads
  them. Test labels are never touched.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

logger = logging.getLogger(__name__)

MODES = ("symmetric", "pairs")
# Patrini et al. 2017's class-dependent flips on CIFAR-10: source class -> the label it gets.
PATRINI_PAIRS = {"truck": "automobile", "bird": "airplane", "deer": "horse", "cat": "dog", "dog": "cat"}
# Keeps the noise's random stream apart from the subset draws and the image-folder order.
NOISE_STREAM = 1729


def check_rate(rate: float, mode: str) -> None:
    """Refuse a rate outside [0, 1) or an unknown mode, naming the params key."""
    if mode not in MODES:
        raise ValueError(f"preprocess.label_noise_mode is {mode!r}; it must be one of {', '.join(MODES)}.")
    if not (isinstance(rate, (int, float)) and 0.0 <= float(rate) < 1.0):
        raise ValueError(
            f"preprocess.label_noise is {rate!r}; it must lie in [0, 1): the fraction of training "
            "labels replaced by a wrong class (0 = clean labels, the paper's setting)."
        )


def flips(count: int, rate: float) -> int:
    """How many of a class's `count` labels are replaced: round(rate x count), halves up."""
    return int(np.floor(rate * count + 0.5))


def _sources(class_names: Sequence[str], mode: str) -> dict[int, int | None]:
    """{class index whose labels are flipped: the index they become, or None for a uniformly
    drawn other class}."""
    if mode == "symmetric":
        return {index: None for index in range(len(class_names))}
    missing = sorted({name for pair in PATRINI_PAIRS.items() for name in pair} - set(class_names))
    if missing:
        raise ValueError(
            "preprocess.label_noise_mode: pairs flips CIFAR-10's similar classes (truck -> "
            "automobile, bird -> airplane, deer -> horse, cat <-> dog), but this dataset has no "
            f"class {', '.join(missing)}. Use preprocess.label_noise_mode: symmetric."
        )
    position = {name: index for index, name in enumerate(class_names)}
    return {position[source]: position[target] for source, target in PATRINI_PAIRS.items()}


def _check_classes_keep_images(labels: np.ndarray, class_names: Sequence[str], rate: float,
                               sources: dict[int, int | None]) -> None:
    """Refuse a rate that would leave some class without one correctly labelled image."""
    emptied = []
    for index in sources:
        count = int(np.count_nonzero(labels == index))
        if count and flips(count, rate) >= count:
            emptied.append(f"{class_names[index]} ({count} image{'s' if count != 1 else ''})")
    if emptied:
        raise ValueError(
            f"preprocess.label_noise {rate} would relabel every training image of "
            f"{', '.join(emptied)}, leaving that class no correctly labelled image. Lower "
            "preprocess.label_noise, or raise preprocess.train_size."
        )


def _warn_if_unidentifiable(rate: float, mode: str, classes: int) -> None:
    limit = (classes - 1) / classes if mode == "symmetric" else 0.5
    if rate >= limit:
        logger.warning(
            "preprocess.label_noise %s with %s noise: a wrong label is now at least as likely as "
            "the true one (from a rate of %.3g), so no loss can recover the clean classes.",
            rate, mode, limit,
        )


def add_label_noise(labels: np.ndarray, class_names: Sequence[str], rate: float,
                    mode: str = "symmetric", seed: int = 0) -> np.ndarray:
    """The noisy labels (a new int32 array) for the clean `labels`; see the module docstring."""
    check_rate(rate, mode)
    labels = np.asarray(labels)
    noisy = labels.astype(np.int32, copy=True)
    if rate == 0:
        return noisy
    sources = _sources(class_names, mode)
    _check_classes_keep_images(labels, class_names, rate, sources)
    _warn_if_unidentifiable(rate, mode, len(class_names))
    rng = np.random.default_rng([seed, NOISE_STREAM])
    classes = len(class_names)
    for index, target in sources.items():
        members = np.flatnonzero(labels == index)
        chosen = rng.choice(members, size=flips(len(members), rate), replace=False)
        if target is None:
            # An offset of 1 .. K - 1 classes: uniform over the other classes, never the same.
            noisy[chosen] = (index + rng.integers(1, classes, size=len(chosen))) % classes
        else:
            noisy[chosen] = target
    return noisy


def noise_record(clean: np.ndarray, noisy: np.ndarray, class_names: Sequence[str],
                 rate: float, mode: str) -> dict:
    """counts.json's `label_noise`: the rate asked for, the labels changed and the realised
    rate (changed / training images), and per clean class how many were changed."""
    clean, noisy = np.asarray(clean), np.asarray(noisy)
    changed = clean != noisy
    per_class = np.bincount(clean[changed], minlength=len(class_names))
    return {
        "rate": float(rate),
        "mode": mode,
        "images": int(clean.size),
        "changed": int(np.count_nonzero(changed)),
        "realised_rate": float(np.mean(changed)) if clean.size else 0.0,
        "changed_per_class": {str(name): int(value) for name, value in zip(class_names, per_class)},
    }

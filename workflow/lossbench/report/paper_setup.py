"""The paper's setup, and every way a study's setup differs from it.

In:  a summary from `lossbench compare` (its `setup`: epochs, image counts, parameter counts,
     validation split, label noise, precisions, devices, backends) and the validated params (`data`,
     `model.width`).
Out: the paper's reference figures (title, epochs, model size, image counts); the list of
     ways a study is smaller than the paper's runs (`paper_scale_gaps`, which decides whether
     the report may compare accuracies with the paper's number for number) and the sentence
     saying so; and the report's caveats, one sentence per difference from the paper.
"""

from __future__ import annotations

from lossbench.report.text import MISSING, count, joined

PAPER_TITLE = (
    "Dierauf, Stutz and Marti, *Comparing Cross-Entropy, Hinge, and Squared Hinge Loss "
    "Functions in Image Classification* (KTH DD2417)"
)
PAPER_EPOCHS = 100
PAPER_PARAMETERS = 1_376_148
PAPER_TRAIN_IMAGES = 50_000
PAPER_TEST_IMAGES = 10_000


def paper_scale_gaps(summary: dict, params: dict) -> list[str]:
    """Every way this study is smaller than the paper's runs; empty when it is at their scale.

    The paper's figures are final accuracies of the full-width model (1,376,148 parameters)
    after 100 epochs on all 50,000 training images, tested on all 10,000 test images. Only a
    study at that scale can be compared with them number for number.
    """
    setup = summary.get("setup", {})
    gaps = []
    width = (params.get("model") or {}).get("width")
    parameters = [value for value in setup.get("model_parameters", []) if value is not None]
    if (width is not None and width != 1.0) or any(value != PAPER_PARAMETERS for value in parameters):
        gaps.append(f"width {MISSING if width is None else width} "
                    f"({joined(count(value) for value in parameters)} parameters)")
    planned = [epochs for epochs in setup.get("epochs_planned", []) if epochs is not None]
    if not planned or min(planned) < PAPER_EPOCHS:
        gaps.append(f"{joined(planned)} epochs")
    train_sizes = [value for value in setup.get("train_size", []) if value is not None]
    validation_sizes = [value for value in setup.get("validation_size", []) if value is not None]
    if "holdout" in setup.get("validation", []):
        train_sizes = [size + held for size, held in zip(train_sizes, validation_sizes)]
    if not train_sizes or min(train_sizes) < PAPER_TRAIN_IMAGES:
        gaps.append(f"{joined(count(value) for value in train_sizes)} training images")
    test_sizes = [value for value in setup.get("test_size", []) if value is not None]
    if not test_sizes or min(test_sizes) < PAPER_TEST_IMAGES:
        gaps.append(f"{joined(count(value) for value in test_sizes)} test images")
    return gaps


def not_comparable_reason(gaps: list[str]) -> str:
    """The sentence saying why the paper's figures cannot be compared with these numbers."""
    return (
        f"not comparable: this study ran at {', '.join(gaps)}, against the paper's width 1.0, "
        f"{PAPER_EPOCHS} epochs, {count(PAPER_TRAIN_IMAGES)} training and "
        f"{count(PAPER_TEST_IMAGES)} test images"
    )


# ---------------------------------------------------------------------------------------------
# Caveats: one function per difference from the paper, each a sentence or None.
# ---------------------------------------------------------------------------------------------


def epochs_caveat(setup: dict) -> str | None:
    """Runs shorter than the paper's 100 epochs give accuracies that are not final."""
    planned = [epochs for epochs in setup.get("epochs_planned", []) if epochs is not None]
    if not planned or max(planned) >= PAPER_EPOCHS:
        return None
    shortness = "far shorter than" if max(planned) <= PAPER_EPOCHS / 2 else "shorter than"
    return (
        f"Runs of {joined(planned)} epochs are {shortness} the paper's {PAPER_EPOCHS}: the "
        "accuracies are not final, and comparisons with the paper's figures and between "
        "slowly converging losses (the paper's hinge and squared hinge) say little."
    )


def model_size_caveat(setup: dict, params: dict) -> str | None:
    """A model narrower (or wider) than the paper's All-CNN."""
    parameters = setup.get("model_parameters", [])
    width = (params.get("model") or {}).get("width")
    if not ((width is not None and width != 1.0) or any(value != PAPER_PARAMETERS for value in parameters)):
        return None
    return (
        f"The model is not the paper's size: width {MISSING if width is None else width}, "
        f"{joined(count(value) for value in parameters)} parameters against "
        f"{count(PAPER_PARAMETERS)}."
    )


def data_caveats(params: dict) -> list[str]:
    """Images from a local copy rather than the official archive, or another dataset."""
    source = params["download"].get("source")
    dataset = params["preprocess"]["dataset"]
    notes = []
    if source:
        notes.append(
            f"The images come from `{source}`, not the official archive: accuracies "
            "are measured on that copy (a re-encoded copy can differ from the official pixels)."
        )
    if dataset != "cifar10" and not source:
        notes.append(f"The dataset is `{dataset}`; the paper used CIFAR-10.")
    return notes


def image_count_caveat(setup: dict) -> str | None:
    """Subsets of the training or test images: noisier, lower accuracies."""
    train_sizes = [value for value in setup.get("train_size", []) if value is not None]
    validation_sizes = [value for value in setup.get("validation_size", []) if value is not None]
    test_sizes = [value for value in setup.get("test_size", []) if value is not None]
    # A hold-out was cut from the training images: the images available for training are both.
    holdout = "holdout" in setup.get("validation", [])
    training_images = [
        size + (validation if holdout else 0)
        for size, validation in zip(train_sizes, validation_sizes or [0] * len(train_sizes))
    ]
    if not ((training_images and max(training_images) < PAPER_TRAIN_IMAGES) or (
        test_sizes and max(test_sizes) < PAPER_TEST_IMAGES
    )):
        return None
    return (
        f"Fewer images than the paper's {count(PAPER_TRAIN_IMAGES)} training and "
        f"{count(PAPER_TEST_IMAGES)} test images (here {joined(count(value) for value in train_sizes)} "
        f"trained on, {joined(count(value) for value in test_sizes)} tested on): subsets "
        "give noisier, lower accuracies."
    )


def validation_caveats(setup: dict) -> list[str]:
    """Which images chose the best epoch: the test set (as in the paper) or a hold-out."""
    notes = []
    if "test" in setup.get("validation", []):
        notes.append(
            "As in the paper, the test set was the validation set each epoch, so the best "
            "validation accuracy and its epoch are chosen on the test set and are optimistic; "
            "test accuracy is that of the final model."
        )
    if "holdout" in setup.get("validation", []):
        notes.append(
            "Validation used a hold-out from the training set, unlike the paper, which "
            "validated on the test set; the test set was used only for the final evaluation."
        )
    return notes


def hardware_caveats(setup: dict) -> list[str]:
    """Another precision than the paper's float32, and runs spread over devices or backends."""
    notes = []
    precisions = [value for value in setup.get("precisions", []) if value != "float32"]
    if precisions:
        notes.append(f"Trained in {joined(precisions)} precision; the paper used float32.")
    for field, name in (("devices", "devices"), ("backends", "backends")):
        if len(setup.get(field, [])) > 1:
            notes.append(f"Runs used different {name} ({joined(setup[field])}); timings are not comparable.")
    return notes


def label_noise_caveat(setup: dict) -> str | None:
    """Training labels partly replaced by wrong ones (`preprocess.label_noise`)."""
    shares = [share for share in setup.get("label_noise", []) if share]
    if not shares:
        return None
    return (
        f"{joined(f'{100 * share:.2f} %' for share in shares)} of the training labels were "
        "replaced by wrong classes (label noise); the paper trained on clean labels. Test "
        "labels are clean, so test accuracy measures how well each loss resisted the noise."
    )


def caveats(summary: dict, params: dict) -> list[str]:
    """Every way in which this run's setup differs from the paper's, as sentences."""
    setup = summary.get("setup", {})
    notes = [
        epochs_caveat(setup),
        model_size_caveat(setup, params),
        *data_caveats(params),
        image_count_caveat(setup),
        label_noise_caveat(setup),
        *validation_caveats(setup),
        *hardware_caveats(setup),
    ]
    return [note for note in notes if note is not None]

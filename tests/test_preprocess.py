"""Tests of lossbench.preprocess on small synthetic archives of each supported layout."""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from archives import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    UNSAFE_KINDS,
    add_bytes,
    make_cifar10_archive,
    make_cifar100_archive,
    make_image_folder_archive,
    make_malicious_pickle_archive,
    make_unsafe_archive,
    png_bytes,
    prepare_with_defaults,
    random_images,
    write_image_folder,
)
from lossbench import cli, preprocess
from lossbench.io.archive import ArchiveError, UnsafeArchiveError
from lossbench.io.prepared import PREPARED_FILES, load_prepared
from lossbench.pipeline.params import with_defaults
from lossbench.preprocess import image_folder, image_folder_order, stratified_subset

PROJECT_PARAMS = Path(__file__).resolve().parent.parent / "params.yaml"


def prepare_into(tmp_path: Path, archive: Path, dataset: str, **options) -> tuple[dict, Path]:
    output_dir = tmp_path / "prepared"
    counts = prepare_with_defaults(
        archive,
        dataset=dataset,
        output_dir=output_dir,
        counts_path=tmp_path / "counts.json",
        **options,
    )
    return counts, output_dir


def assert_round_trip(output_dir: Path, expected, training_order=None) -> None:
    data = load_prepared(output_dir)
    for split in ("train", "test"):
        images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        if split == "train" and training_order is not None:
            # Image folders store their training images in one fixed seeded order.
            images, labels = images[np.argsort(training_order)], labels[np.argsort(training_order)]
        assert images.dtype == np.uint8
        assert images.shape == getattr(expected, f"{split}_images").shape
        assert labels.dtype == np.int32
        np.testing.assert_array_equal(images, getattr(expected, f"{split}_images"))
        np.testing.assert_array_equal(labels, getattr(expected, f"{split}_labels"))
    assert data.class_names == tuple(expected.class_names)
    assert json.loads((output_dir / "classes.json").read_text()) == list(expected.class_names)


# ---------------------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------------------


def test_cifar10_round_trip(tmp_path):
    expected = make_cifar10_archive(tmp_path)

    counts, output_dir = prepare_into(tmp_path, expected.path, "cifar10")

    assert_round_trip(output_dir, expected)
    assert load_prepared(output_dir).train_images.shape == (50, 32, 32, 3)
    assert counts["train"] == {"total": 50, "per_class": {name: 5 for name in CIFAR10_CLASSES}}
    assert counts["test"]["total"] == 20


def test_cifar100_round_trip_keeps_the_meta_label_order(tmp_path):
    expected = make_cifar100_archive(tmp_path)

    counts, output_dir = prepare_into(tmp_path, expected.path, "cifar100")

    assert_round_trip(output_dir, expected)
    assert load_prepared(output_dir).class_names == CIFAR100_CLASSES
    assert list(counts["train"]["per_class"]) == list(CIFAR100_CLASSES)
    assert load_prepared(output_dir).num_classes == 100


@pytest.mark.parametrize("prefix", ["cifar10-jpeg", ""], ids=["with-top-folder", "bare"])
def test_image_folder_round_trip(tmp_path, prefix):
    expected = make_image_folder_archive(tmp_path, prefix=prefix)

    counts, output_dir = prepare_into(tmp_path, expected.path, "image_folder")

    assert_round_trip(output_dir, expected, image_folder_order(len(expected.train_labels), 0))
    assert expected.class_names == ("airplane", "cat", "dog")  # alphabetical, not as listed
    assert counts == {
        "train": {"total": 12, "per_class": {"airplane": 4, "cat": 6, "dog": 2}},
        "test": {"total": 6, "per_class": {"airplane": 2, "cat": 3, "dog": 1}},
        "label_noise": {"rate": 0.0, "mode": "symmetric", "images": 12, "changed": 0,
                        "realised_rate": 0.0, "changed_per_class": {"airplane": 0, "cat": 0, "dog": 0}},
    }
    assert json.loads((tmp_path / "counts.json").read_text()) == counts


def test_image_folder_in_parallel_matches_serial(tmp_path, monkeypatch):
    expected = make_image_folder_archive(tmp_path)
    # Force the worker pool onto this tiny archive: two-image chunks over two processes.
    monkeypatch.setattr(image_folder, "PARALLEL_MINIMUM_IMAGES", 1)
    monkeypatch.setattr(image_folder, "DECODE_CHUNK_IMAGES", 2)

    _counts, output_dir = prepare_into(tmp_path, expected.path, "image_folder", workers=2)

    assert_round_trip(output_dir, expected, image_folder_order(len(expected.train_labels), 0))


def test_image_folder_converts_grayscale_and_jpeg(tmp_path):
    gray = random_images(1, seed=3)[0][:, :, 0]
    color = random_images(1, seed=4)[0]
    jpeg = io.BytesIO()
    Image.fromarray(color).save(jpeg, format="JPEG", quality=95)
    gray_png = io.BytesIO()
    Image.fromarray(gray, mode="L").save(gray_png, format="PNG")
    archive = tmp_path / "mixed.tar"
    with tarfile.open(archive, "w") as tar:
        add_bytes(tar, "train/a/gray.png", gray_png.getvalue())
        add_bytes(tar, "train/b/color.JPG", jpeg.getvalue())
        add_bytes(tar, "test/a/gray.png", gray_png.getvalue())
        add_bytes(tar, "train/a/._gray.png", b"macOS resource fork, not an image")
        add_bytes(tar, "train/a/notes.txt", b"not an image")

    _counts, output_dir = prepare_into(tmp_path, archive, "image_folder")

    data = load_prepared(output_dir)
    # Training images are stored in a fixed seeded order: find each by its label.
    gray_index, color_index = (int(np.flatnonzero(data.train_labels == label)[0]) for label in (0, 1))
    np.testing.assert_array_equal(
        data.train_images[gray_index], np.repeat(gray[:, :, None], 3, axis=2)
    )
    expected_jpeg = np.asarray(Image.open(io.BytesIO(jpeg.getvalue())).convert("RGB"))
    np.testing.assert_array_equal(data.train_images[color_index], expected_jpeg)
    assert sorted(data.train_labels.tolist()) == [0, 1]
    assert data.class_names == ("a", "b")


def test_image_of_wrong_size_is_named(tmp_path):
    archive = tmp_path / "sizes.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        add_bytes(tar, "train/cat/good.png", png_bytes(random_images(1, seed=1)[0]))
        add_bytes(tar, "train/cat/big.png", png_bytes(np.zeros((64, 48, 3), np.uint8)))
        add_bytes(tar, "test/cat/good.png", png_bytes(random_images(1, seed=2)[0]))
        # A second class: an archive of one class is refused before any image is decoded.
        add_bytes(tar, "train/dog/good.png", png_bytes(random_images(1, seed=3)[0]))
        add_bytes(tar, "test/dog/good.png", png_bytes(random_images(1, seed=4)[0]))

    with pytest.raises(ValueError, match=r"train/cat/big\.png is 48x64"):
        prepare_into(tmp_path, archive, "image_folder")

    assert not (tmp_path / "prepared").exists()


def test_undecodable_image_is_named(tmp_path):
    archive = tmp_path / "broken.tar"
    with tarfile.open(archive, "w") as tar:
        add_bytes(tar, "train/cat/broken.jpg", b"\xff\xd8 not really a jpeg")
        add_bytes(tar, "test/cat/good.png", png_bytes(random_images(1, seed=2)[0]))
        add_bytes(tar, "train/dog/good.png", png_bytes(random_images(1, seed=3)[0]))
        add_bytes(tar, "test/dog/good.png", png_bytes(random_images(1, seed=4)[0]))

    with pytest.raises(ValueError, match=r"train/cat/broken\.jpg cannot be decoded"):
        prepare_into(tmp_path, archive, "image_folder")


def test_test_class_without_training_images_is_refused(tmp_path):
    archive = tmp_path / "classes.tar"
    image = png_bytes(random_images(1, seed=1)[0])
    with tarfile.open(archive, "w") as tar:
        add_bytes(tar, "train/cat/0.png", image)
        add_bytes(tar, "test/dog/0.png", image)

    with pytest.raises(ValueError, match="dog"):
        prepare_into(tmp_path, archive, "image_folder")


# ---------------------------------------------------------------------------------------
# Wrong or unsafe archives
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "dataset", "found"),
    [
        (make_cifar10_archive, "image_folder", "cifar10"),
        (make_cifar10_archive, "cifar100", "cifar10"),
        (make_cifar100_archive, "cifar10", "cifar100"),
        (make_image_folder_archive, "cifar10", "image_folder"),
    ],
)
def test_wrong_dataset_says_which_to_set(tmp_path, make, dataset, found):
    archive = make(tmp_path).path

    with pytest.raises(ValueError) as error:
        prepare_into(tmp_path, archive, dataset)

    assert f"Set preprocess.dataset: {found} in params.yaml" in str(error.value)
    assert not (tmp_path / "prepared").exists()
    assert not (tmp_path / "counts.json").exists()


def test_unknown_layout_lists_the_layouts(tmp_path):
    archive = tmp_path / "other.tar"
    with tarfile.open(archive, "w") as tar:
        add_bytes(tar, "readme.txt", b"hello")

    with pytest.raises(ValueError, match="no dataset layout"):
        prepare_into(tmp_path, archive, "cifar10")


def test_unknown_dataset_name(tmp_path):
    archive = make_cifar10_archive(tmp_path).path

    with pytest.raises(ValueError, match=r"preprocess\.dataset"):
        prepare_into(tmp_path, archive, "no_such_dataset")


@pytest.mark.parametrize("kind", UNSAFE_KINDS)
def test_unsafe_member_is_refused(tmp_path, kind):
    archive = make_unsafe_archive(tmp_path, kind)

    with pytest.raises(UnsafeArchiveError):
        prepare_into(tmp_path, archive, "image_folder")

    assert not (tmp_path / "prepared").exists()


def test_malicious_pickle_is_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    archive = make_malicious_pickle_archive(tmp_path, marker)

    with pytest.raises(ArchiveError, match="refusing to load"):
        prepare_into(tmp_path, archive, "cifar10")

    assert not marker.exists()


def test_missing_batch_is_named(tmp_path):
    source = make_cifar10_archive(tmp_path).path
    archive = tmp_path / "partial.tar"
    with tarfile.open(source) as full, tarfile.open(archive, "w") as partial:
        for member in full.getmembers():
            if not member.name.endswith("data_batch_3"):
                partial.addfile(member, full.extractfile(member))

    with pytest.raises(ArchiveError, match="data_batch_3"):
        prepare_into(tmp_path, archive, "cifar10")


def test_not_a_tar_and_truncated_archives(tmp_path):
    text = tmp_path / "text.tar.gz"
    text.write_text("not an archive")
    with pytest.raises(ArchiveError, match="not a readable tar"):
        prepare_into(tmp_path, text, "cifar10")

    whole = make_cifar10_archive(tmp_path).path.read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ArchiveError, match="truncated or corrupt"):
        prepare_into(tmp_path, truncated, "cifar10")


def test_missing_archive_says_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="lossbench download"):
        prepare_into(tmp_path, tmp_path / "absent.tar.gz", "cifar10")


# ---------------------------------------------------------------------------------------
# Subsets
# ---------------------------------------------------------------------------------------


def test_stratified_subset_uses_largest_remainders():
    labels = np.repeat([0, 1, 2], [6, 4, 2])

    # Shares 2.5, 1.67, 0.83: floors 2, 1, 0 and the two leftovers go to the largest
    # remainders, classes 2 (0.83) and 1 (0.67).
    chosen = stratified_subset(labels, 5, seed=0)

    assert Counter(labels[chosen].tolist()) == {0: 2, 1: 2, 2: 1}
    assert list(chosen) == sorted(chosen)
    assert len(set(chosen.tolist())) == 5


@pytest.mark.parametrize("size", [1, 7, 10, 33, 99, 100])
def test_stratified_subset_sizes_and_balance(size):
    labels = np.arange(100) % 10  # ten classes of ten

    chosen = stratified_subset(labels, size, seed=1)

    assert len(chosen) == size
    per_class = np.bincount(labels[chosen], minlength=10)
    assert per_class.max() - per_class.min() <= 1


def test_stratified_subset_seeds():
    labels = np.arange(1000) % 10

    first = stratified_subset(labels, 100, seed=7)
    again = stratified_subset(labels, 100, seed=7)
    other = stratified_subset(labels, 100, seed=8)

    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_prepare_subsets_are_stratified_rows_of_the_full_set(tmp_path):
    expected = make_cifar10_archive(tmp_path)

    counts, output_dir = prepare_into(
        tmp_path, expected.path, "cifar10", train_size=23, test_size=10, subset_seed=3
    )

    data = load_prepared(output_dir)
    assert data.train_images.shape == (23, 32, 32, 3)
    assert data.test_images.shape == (10, 32, 32, 3)
    assert counts["train"]["total"] == 23 and counts["test"]["total"] == 10
    assert sorted(counts["train"]["per_class"].values()) == [2] * 7 + [3] * 3
    assert set(counts["test"]["per_class"].values()) == {1}
    # Every chosen image is the full set's image at the index the subset function picks.
    indices = stratified_subset(expected.train_labels, 23, seed=3)
    np.testing.assert_array_equal(data.train_images, expected.train_images[indices])
    np.testing.assert_array_equal(data.train_labels, expected.train_labels[indices])


def test_prepare_subset_changes_with_the_seed_only(tmp_path):
    expected = make_cifar10_archive(tmp_path)

    def train_images(seed: int, test_size: int | None) -> np.ndarray:
        prepare_into(
            tmp_path, expected.path, "cifar10", train_size=20, test_size=test_size, subset_seed=seed
        )
        return load_prepared(tmp_path / "prepared").train_images

    first = train_images(0, None)
    np.testing.assert_array_equal(first, train_images(0, 10))  # the test size does not matter
    assert not np.array_equal(first, train_images(1, None))


@pytest.mark.parametrize(
    ("key", "options"),
    [("preprocess.train_size", {"train_size": 51}), ("preprocess.test_size", {"test_size": 21})],
)
def test_oversize_subset_names_the_key(tmp_path, key, options):
    expected = make_cifar10_archive(tmp_path)

    with pytest.raises(ValueError) as error:
        prepare_into(tmp_path, expected.path, "cifar10", **options)

    assert key in str(error.value)
    assert ("50" if key == "preprocess.train_size" else "20") in str(error.value)
    assert not (tmp_path / "prepared").exists()


# ---------------------------------------------------------------------------------------
# Output files
# ---------------------------------------------------------------------------------------


def test_existing_output_is_replaced_and_no_temporaries_remain(tmp_path):
    expected = make_cifar10_archive(tmp_path)
    output_dir = tmp_path / "prepared"
    output_dir.mkdir()
    (output_dir / "stale.npy").write_bytes(b"old")

    prepare_into(tmp_path, expected.path, "cifar10")

    assert sorted(path.name for path in output_dir.iterdir()) == sorted(PREPARED_FILES)
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


def test_load_prepared_tells_how_to_make_the_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="lossbench preprocess"):
        load_prepared(tmp_path / "nothing")


def test_run_reads_the_preprocess_section(tmp_path):
    expected = make_cifar10_archive(tmp_path)
    preprocess_params = with_defaults("preprocess",
                                      {"dataset": "cifar10", "train_size": 10, "test_size": None})

    counts = preprocess.run(
        preprocess_params,
        archive=expected.path,
        output_dir=tmp_path / "prepared",
        counts_path=tmp_path / "counts.json",
        max_archive_bytes=with_defaults("download", {})["max_archive_bytes"],
    )

    assert counts["train"]["total"] == 10
    assert counts["test"]["total"] == 20


def test_cli_preprocess(tmp_path, capsys):
    expected = make_image_folder_archive(tmp_path)
    params = yaml.safe_load(PROJECT_PARAMS.read_text())
    params["preprocess"]["dataset"] = "image_folder"
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    arguments = [
        "--params",
        str(params_path),
        "preprocess",
        "--input",
        str(expected.path),
        "--output",
        str(tmp_path / "prepared"),
        "--counts",
        str(tmp_path / "counts.json"),
    ]

    assert cli.main(arguments) == 0
    assert_round_trip(
        tmp_path / "prepared", expected, image_folder_order(len(expected.train_labels), 0)
    )

    params["preprocess"]["dataset"] = "cifar10"
    params_path.write_text(yaml.safe_dump(params))
    assert cli.main(arguments) == 2
    assert "preprocess.dataset: image_folder" in capsys.readouterr().err


def test_image_folder_training_order_is_fixed_and_not_grouped_by_class(tmp_path):
    # Training without shuffling (the paper's setting) must not see class-sorted batches, and
    # every run must see the same order: preprocess stores one seeded permutation.
    expected = make_image_folder_archive(tmp_path, classes={"a": (20, 1), "b": (20, 1), "c": (20, 1)})

    prepare_into(tmp_path, expected.path, "image_folder", subset_seed=5)
    first = load_prepared(tmp_path / "prepared").train_labels
    prepare_into(tmp_path, expected.path, "image_folder", subset_seed=5)
    again = load_prepared(tmp_path / "prepared").train_labels

    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, np.sort(expected.train_labels)[image_folder_order(60, 5)])
    # Grouped by class there would be 2 label changes; a random order of 60 has dozens.
    assert np.count_nonzero(np.diff(first)) > 20


# ---------------------------------------------------------------------------------------
# Odd data refused from the archive's index, before decoding (issue 12)
# ---------------------------------------------------------------------------------------


@pytest.fixture
def no_decoding(monkeypatch):
    """Make decoding an image fail the test: these refusals must come from the listing."""

    def decode(*args, **kwargs):
        raise AssertionError("an image was decoded before the sizes were checked")

    monkeypatch.setattr(preprocess, "decode_images", decode)


def test_one_class_is_refused_before_decoding(tmp_path, no_decoding):
    expected = make_image_folder_archive(tmp_path, classes={"cat": (4, 2)})

    with pytest.raises(ValueError, match=r"holds 1 class \(cat\); a classifier needs at least 2"):
        prepare_into(tmp_path, expected.path, "image_folder")
    assert not (tmp_path / "prepared").exists()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"train_size": 2}, "preprocess.train_size is 2, fewer than the 3 classes"),
        ({"test_size": 1}, "preprocess.test_size is 1, fewer than the 3 classes"),
        ({"train_size": 13}, "preprocess.train_size is 13, but the archive has only 12"),
        ({"test_size": 7}, "preprocess.test_size is 7, but the archive has only 6"),
        # dog holds 2 of 12 training images: a stratified 3 gives cat 2, airplane 1, dog 0.
        ({"train_size": 3}, r"the smallest classes \(dog\)"),
    ],
)
def test_image_folder_sizes_are_refused_before_decoding(tmp_path, no_decoding, options, expected):
    archive = make_image_folder_archive(tmp_path)

    with pytest.raises(ValueError, match=expected):
        prepare_into(tmp_path, archive.path, "image_folder", **options)
    assert not (tmp_path / "prepared").exists()


def test_cifar_size_below_the_number_of_classes_is_refused(tmp_path):
    expected = make_cifar10_archive(tmp_path)

    with pytest.raises(ValueError, match="preprocess.train_size is 9, fewer than the 10 classes"):
        prepare_into(tmp_path, expected.path, "cifar10", train_size=9)


def test_image_folder_subset_decodes_only_the_chosen_images(tmp_path, monkeypatch):
    expected = make_image_folder_archive(tmp_path)
    decoded = []
    original = preprocess.decode_images

    def counting(blobs, names, **options):
        decoded.extend(names)
        return original(blobs, names, **options)

    monkeypatch.setattr(preprocess, "decode_images", counting)
    prepare_into(tmp_path, expected.path, "image_folder", train_size=6, test_size=4, subset_seed=2)

    assert len(decoded) == 10
    data = load_prepared(tmp_path / "prepared")
    indices = stratified_subset(expected.train_labels, 6, seed=2)[image_folder_order(6, 2)]
    np.testing.assert_array_equal(data.train_images, expected.train_images[indices])
    np.testing.assert_array_equal(data.train_labels, expected.train_labels[indices])


# ---------------------------------------------------------------------------------------
# Damaged prepared arrays name themselves (issue 12)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", ["truncated", "header_only", "empty"])
def test_a_damaged_prepared_array_is_named_with_the_remedy(tmp_path, cut):
    expected = make_cifar10_archive(tmp_path)
    _, output_dir = prepare_into(tmp_path, expected.path, "cifar10")
    damaged = output_dir / "train_images.npy"
    size = {"truncated": damaged.stat().st_size - 100, "header_only": 128, "empty": 0}[cut]
    damaged.write_bytes(damaged.read_bytes()[:size])

    with pytest.raises(ValueError) as error:
        load_prepared(output_dir)

    assert str(damaged) in str(error.value)
    assert "--forcerun preprocess" in str(error.value)
    assert "dvc repro --force preprocess" in str(error.value)


def test_schema_dataset_enum_matches_the_registry():
    # params.yaml is validated before anything heavy is imported (Snakemake reads it to build
    # its DAG), so the schema lists the names itself and this test keeps it in step.
    schema = yaml.safe_load((Path(__file__).resolve().parent.parent / "workflow" / "schemas"
                             / "params.schema.yaml").read_text())
    enum = schema["properties"]["preprocess"]["properties"]["dataset"]["enum"]
    assert tuple(enum) == tuple(preprocess.DATASETS), (
        "The enum of preprocess.dataset in workflow/schemas/params.schema.yaml must list the "
        f"datasets of lossbench.preprocess.DATASETS in the same order: {list(preprocess.DATASETS)}."
    )
    for name, spec in preprocess.DATASETS.items():
        assert spec.name == name and spec.layout and callable(spec.found) and callable(spec.read)
    expected = "preprocess.dataset is 'no_such_dataset'; it must be one of cifar10, cifar100, image_folder"
    with pytest.raises(ValueError, match=expected):
        preprocess.dataset_spec("no_such_dataset")


@pytest.mark.parametrize("extra, named", [
    ("images/train/cat/more/0099.png", "images/train/cat/more/0099.png"),   # a nested folder
    ("images/train/cat/0099.bmp", "images/train/cat/0099.bmp"),             # another format
    ("images/test/0099.png", "images/test/0099.png"),                       # outside a class
])
def test_files_an_image_folder_would_not_read_are_refused_not_dropped(tmp_path, extra, named):
    """Issue 31: images in subfolders of a class folder, .bmp and .gif files were dropped
    without a word (a class kept 10 of its 60 images). Files that are no images (notes, macOS
    `._` files) stay ignored (test_image_folder_converts_grayscale_...)."""
    import io
    import tarfile

    tree = tmp_path / "tree"
    write_image_folder(tree)
    path = tmp_path / "images.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for file in sorted(tree.rglob("*")):
            if file.is_file():
                tar.add(file, arcname=file.relative_to(tree).as_posix())
        info = tarfile.TarInfo(extra)
        payload = (tree / "images/train").rglob("*.png").__next__().read_bytes()
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(ValueError, match=rf"1 image\(s\) under train/ or test/ that would not be read, "
                                         rf"e.g. '{named}'"):
        prepare_into(tmp_path, path, "image_folder")


def test_a_16_bit_image_is_refused_not_clipped(tmp_path):
    """Issue 31: a 16-bit PNG was clipped to 6 values by the conversion to 8-bit RGB."""
    import io
    import tarfile

    from PIL import Image

    tree = tmp_path / "tree"
    write_image_folder(tree)
    deep = io.BytesIO()
    Image.fromarray(np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60).save(deep, format="PNG")
    target = sorted((tree / "images/train").rglob("*.png"))[0]
    target.write_bytes(deep.getvalue())
    path = tmp_path / "images.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(tree / "images", arcname="images")
    with pytest.raises(ValueError, match=r"has 16 bits per sample \(mode I;16\); images must have 8"):
        prepare_into(tmp_path, path, "image_folder")

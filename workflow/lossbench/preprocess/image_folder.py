"""Image-folder archives: their images listed by split and class, then decoded in parallel.

In:  an archive's regular files by path (from lossbench.io.archive), laid out as
     ``[<folder>/]train/<class>/<image>`` and ``[<folder>/]test/<class>/<image>`` with 32x32
     JPEG or PNG images; later, the encoded bytes of the images chosen from the listing.
Out: `list_image_folder`: the class names in alphabetical order (their labels) and, per
     split, an `ImageListing` of paths, members and labels sorted by (class, path), so the
     order does not depend on how the tar was packed; `decode_images`: one uint8
     (N, 32, 32, 3) RGB array. ValueError, naming the archive or the image, for a layout
     or an image that cannot be used.

Listing and decoding are separate so that the preprocess stage can check the subset sizes
and draw the subsets from the labels before any image is decoded.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lossbench.io.archive import path_parts
from lossbench.io.prepared import IMAGE_SIZE, SPLITS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Image formats an image folder may hold but lossbench does not read: refused, not skipped.
OTHER_IMAGE_SUFFIXES = (".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".heic")
# Pillow's modes of more than 8 bits per sample (a 16-bit grayscale PNG opens as I;16).
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")

# Below this many images, starting worker processes costs more than it saves.
PARALLEL_MINIMUM_IMAGES = 4096
DECODE_CHUNK_IMAGES = 2048


@dataclass(frozen=True, eq=False)
class ImageListing:
    """One split's images as listed in the archive: paths, tar members and labels."""

    names: list[str]
    members: list[tarfile.TarInfo]
    labels: np.ndarray

    def take(self, indices: np.ndarray) -> ImageListing:
        return ImageListing(
            [self.names[index] for index in indices],
            [self.members[index] for index in indices],
            self.labels[indices],
        )


def image_folder_parts(name: str) -> tuple[str, str, str, str] | None:
    """(prefix, split, class, filename) of an image-folder image path, else None."""
    parts = path_parts(name)
    if not parts or parts[-1].startswith(".") or not parts[-1].lower().endswith(IMAGE_SUFFIXES):
        return None
    if len(parts) == 3 and parts[0] in SPLITS:
        return ("", *parts)
    if len(parts) == 4 and parts[1] in SPLITS:
        return parts
    return None


def list_image_folder(
    archive: Path, files: dict[str, tarfile.TarInfo]
) -> tuple[list[str], dict[str, ImageListing]]:
    """The class names and each split's listing; labels number the classes alphabetically."""
    entries = _entries_by_split(archive, files)
    class_names = sorted({class_name for class_name, _name, _member in entries["train"]})
    if not class_names or not entries["test"]:
        raise ValueError(
            f"{archive} has {len(entries['train'])} training and {len(entries['test'])} test "
            "images; an image folder needs both train/<class>/<image> and test/<class>/<image>."
        )
    test_classes = {class_name for class_name, _name, _member in entries["test"]}
    unknown = sorted(test_classes - set(class_names))
    if unknown:
        raise ValueError(
            f"{archive} has test classes with no training images: {', '.join(unknown)}. "
            "Every test/<class> folder needs a matching train/<class> folder."
        )
    label_of = {class_name: label for label, class_name in enumerate(class_names)}
    listings = {}
    for split in SPLITS:
        # Sorting by (class, path) makes the order independent of how the tar was packed.
        listed = sorted(entries[split], key=lambda entry: (entry[0], entry[1]))
        listings[split] = ImageListing(
            [name for _class_name, name, _member in listed],
            [member for _class_name, _name, member in listed],
            np.array([label_of[class_name] for class_name, _n, _m in listed], dtype=np.int32),
        )
    return class_names, listings


def _entries_by_split(
    archive: Path, files: dict[str, tarfile.TarInfo]
) -> dict[str, list[tuple[str, str, tarfile.TarInfo]]]:
    """Each split's images as (class, path, member), all under one top-level folder."""
    entries = {split: [] for split in SPLITS}
    prefixes = set()
    unread = []
    for name, member in files.items():
        parts = image_folder_parts(name)
        if parts is None:
            if _unread_image(name) and getattr(member, "isfile", lambda: True)():
                unread.append(name)
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
    if unread:
        # Dropping them silently left a class with 10 of its 60 images (issue 31).
        shown = ", ".join(repr(name) for name in sorted(unread)[:3])
        raise ValueError(
            f"{archive} has {len(unread)} image(s) under train/ or test/ that would not be read, "
            f"e.g. {shown}: images must sit directly in train/<class>/ or test/<class>/ and be "
            f"{', '.join(IMAGE_SUFFIXES)} files. Move, convert or remove them, and run again."
        )
    return entries


def _unread_image(name: str) -> bool:
    """Whether `name` is an image the layout would not read: inside a train/ or test/ folder
    but not directly in a class folder, or in a format not read (.bmp, .gif, ...). Other files
    there (notes, macOS `._` files) are no images and stay ignored."""
    parts = path_parts(name)
    # The split folder is the first or (under one top-level folder) the second part.
    if len(parts) < 2 or parts[-1].startswith(".") or not any(
            part in SPLITS for part in parts[:min(2, len(parts) - 1)]):
        return False
    return parts[-1].lower().endswith(IMAGE_SUFFIXES + OTHER_IMAGE_SUFFIXES)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # Not every platform has sched_getaffinity (macOS, Windows).
        return os.cpu_count() or 1


def decode_images(
    blobs: Sequence[bytes], names: Sequence[str], *, workers: int | None
) -> np.ndarray:
    """Decode encoded images into one (N, 32, 32, 3) uint8 array, in chunks across processes.

    ``workers`` is the number of processes (None = the CPUs this process may use).
    """
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
                if image.mode in SIXTEEN_BIT_MODES:
                    # convert("RGB") would clip every value above 255 (issue 31: six values left).
                    raise ValueError(
                        f"The image {name} has 16 bits per sample (mode {image.mode}); images must "
                        "have 8. Convert it (e.g. with Pillow or ImageMagick: -depth 8) and run again."
                    )
                if image.mode != "RGB":
                    image = image.convert("RGB")
                images[index] = np.asarray(image)
        except (UnidentifiedImageError, OSError, SyntaxError) as error:
            raise ValueError(
                f"The image {name} cannot be decoded ({error}). Replace it or remove it."
            ) from error
    return images

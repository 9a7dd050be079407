"""Tar archives read in place, with every member checked first.

In:  the path of a tar archive (uncompressed, gzip, bzip2 or xz) and the most bytes it may
     hold once decompressed (params.yaml's ``download.max_archive_bytes``).
Out: `TarContents` (the decompressed bytes and the checked members) and, from it,
     `regular_files` (the regular files by normalised path); or ArchiveError for an
     unreadable or truncated archive, ArchiveTooLargeError for one larger than the limit,
     and UnsafeArchiveError naming the first member that is not a regular file or directory
     with a relative path inside the archive.

The size is checked first, by streaming: a compressed archive is decompressed once in 1 MB
pieces that are counted and dropped, so a decompression bomb (gigabytes of zeros in a few
megabytes) is refused after `max_bytes` bytes, in seconds, with memory of a few megabytes.
Only an archive within the limit is then decompressed into memory.

Every member passes Python's `data` extraction filter (`tarfile.data_filter`), which refuses
paths that leave the archive through '..', device files, FIFOs and links leading outside.
Reading in place adds three refusals the filter does not make: absolute paths (the filter
strips the leading '/'), links of any kind (a link holds no bytes of its own to read) and
sparse files (their bytes are not stored in one piece).

Shared by the download stage (which checks what it fetched) and the preprocess stage (which
reads the archive in place), so that neither stage imports the other.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path


class ArchiveError(ValueError):
    """The file is not a readable tar archive."""


COUNT_CHUNK_BYTES = 1 << 20


class ArchiveTooLargeError(ArchiveError):
    """The archive holds more bytes (decompressed) than download.max_archive_bytes allows."""


def too_large(archive: Path | str, what: str, max_bytes: int) -> ArchiveTooLargeError:
    """The error for an archive (or source) of more than ``max_bytes``: ``what`` says how,
    with ``{limit}`` where the limit goes."""
    limit = f"download.max_archive_bytes ({max_bytes:,} bytes)"
    return ArchiveTooLargeError(
        f"Refusing {archive}: it {what.format(limit=limit)}. The datasets lossbench reads are "
        "far smaller (CIFAR-10: 178 MB decompressed); if this archive is genuine, raise "
        "download.max_archive_bytes in params.yaml, else point download.source (or "
        "download.url) at the dataset's archive."
    )


class UnsafeArchiveError(ArchiveError):
    """The archive holds a member that could write outside its target or is not a plain file."""


def _in_place_problem(member: tarfile.TarInfo) -> str | None:
    """Why reading ``member`` in place is refused where the `data` filter would let it pass."""
    # Plain string operations rather than pathlib: this runs once per member, 60,000 times
    # for an image folder. A Windows drive ("C:") counts as absolute on every platform.
    name = member.name.replace("\\", "/")
    if name.startswith("/") or name[1:2] == ":":
        return "has an absolute path"
    # The filter lets "train/../train/cat/1.png" pass (it stays inside), but members are
    # read in place and known by their names, so a name must say plainly where it belongs.
    if ".." in name.split("/"):
        return "has a '..' component that could escape the target directory"
    if member.issym():
        return f"is a symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"is a hard link (to {member.linkname!r})"
    if member.issparse():
        return "is a sparse file"
    return None


def _filter_problem(member: tarfile.TarInfo, destination: str) -> str | None:
    """Why Python's `data` filter refuses ``member``, or None if it lets it pass.

    ``destination`` is an empty directory standing in for the one the archive would be
    extracted into: nothing lies below it, so only the member's name counts. (Not the
    archive's own path: Pythons with the CVE-2025-4517 fix, 3.12.11+, 3.13.4+ and
    distributions' backports such as Ubuntu's 3.12.3, resolve the destination strictly and
    raise NotADirectoryError for a path below a file.)"""
    try:
        tarfile.data_filter(member, destination)
    except tarfile.OutsideDestinationError:
        return "has a path that leads outside the archive (a '..' component)"
    except tarfile.SpecialFileError:
        return "is a device file, a FIFO or another special file"
    except tarfile.FilterError as error:
        return f"is refused by Python's tar data filter ({error})"
    return None


def check_member(member: tarfile.TarInfo, archive: Path | str, destination: str) -> None:
    """Raise UnsafeArchiveError if ``member`` of ``archive`` is unsafe to read or extract
    into ``destination`` (an empty directory)."""
    problem = _in_place_problem(member) or _filter_problem(member, destination)
    if problem is not None:
        raise UnsafeArchiveError(
            f"Refusing the archive {archive}: its member {member.name!r} {problem}. Only "
            "regular files and directories with relative paths inside the archive are "
            "accepted. Point download.source (or download.url) at a trustworthy archive."
        )


@dataclass(frozen=True, eq=False)
class TarContents:
    """A tar archive decompressed into memory: its bytes and its checked members.

    ``member_bytes`` slices a regular file's content straight out of ``data``; for tens of
    thousands of small images that is several times faster than tarfile's streaming reads.
    """

    data: bytes
    members: list[tarfile.TarInfo]

    def member_bytes(self, member: tarfile.TarInfo) -> bytes:
        return self.data[member.offset_data : member.offset_data + member.size]


def read_archive(archive: Path, max_bytes: int, label: str | None = None) -> TarContents:
    """Decompress ``archive`` (tar, tar.gz, tar.bz2 or tar.xz) and check every member.

    Raises FileNotFoundError if it is missing, ArchiveTooLargeError if it holds more than
    ``max_bytes`` (checked by streaming, before anything is held in memory), ArchiveError if
    it is not a tar archive or is truncated, and UnsafeArchiveError naming the first unsafe
    member. The whole archive is then held in memory (about 180 MB for CIFAR-10's release).
    """
    archive = Path(archive)
    if not archive.is_file():
        raise FileNotFoundError(
            f"The archive {archive} does not exist or is not a regular file. Run `lossbench "
            "download` (or `dvc repro download`) first."
        )
    check_size(archive, max_bytes, label)
    data = _decompress(archive)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = _members(tar, archive)
    except tarfile.TarError as error:
        raise ArchiveError(
            f"{archive} is not a readable tar archive (uncompressed, gzip, bzip2 or xz): "
            f"{error}. Check that download.source (or download.url) points at the dataset's archive."
        ) from error
    if not members:
        raise ArchiveError(f"{archive} is an empty tar archive. Check download.source (or download.url).")
    with tempfile.TemporaryDirectory(prefix="lossbench-extraction-check-") as destination:
        for member in members:
            check_member(member, archive, destination)
            if member.isfile() and member.offset_data + member.size > len(data):
                raise ArchiveError(
                    f"{archive} is truncated (its member {member.name!r} is cut short). "
                    "Delete it and run `lossbench download` again."
                )
    return TarContents(data, members)


# The most members an archive may hold: 4x CIFAR-10 as an image folder (60,022 members), so
# that an archive of millions of empty members (a 22 MB gzip of 1.9 million held 2 GB of
# member records for 142 s before its size was refused) stops after a few seconds and a few
# hundred megabytes. A dataset with more files raises it here.
MAX_MEMBERS = 250_000


def _members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """The archive's members, read one by one up to MAX_MEMBERS (ArchiveError past it)."""
    members = []
    while (member := tar.next()) is not None:
        members.append(member)
        if len(members) > MAX_MEMBERS:
            raise ArchiveError(
                f"{archive} holds more than {MAX_MEMBERS:,} members, more than any dataset "
                "lossbench reads (CIFAR-10 as an image folder has 60,022): it is not the dataset's "
                "archive. Check download.source (or download.url)."
            )
    return members


def check_members(archive: Path, max_bytes: int, label: str | None = None) -> None:
    """Raise UnsafeArchiveError on the first unsafe member, ArchiveError if unreadable or
    ArchiveTooLargeError (naming ``label`` where given) if larger than ``max_bytes``."""
    read_archive(archive, max_bytes, label)


# Each compression by its magic number: the module that decompresses it whole or as a stream.
COMPRESSIONS = ((b"\x1f\x8b", gzip), (b"BZh", bz2), (b"\xfd7zXZ\x00", lzma))
DECOMPRESSION_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError)


def _compression(archive: Path):
    """gzip, bz2 or lzma, whichever compressed ``archive`` (by its magic number), or None."""
    with archive.open("rb") as handle:
        magic = handle.read(6)
    return next((module for prefix, module in COMPRESSIONS if magic.startswith(prefix)), None)


def _corrupt(archive: Path, error: BaseException) -> ArchiveError:
    return ArchiveError(
        f"{archive} is truncated or corrupt ({error}). Delete it and run `lossbench download` "
        "again."
    )


def check_size(archive: Path, max_bytes: int, label: str | None = None) -> None:
    """Raise ArchiveTooLargeError if ``archive`` holds more than ``max_bytes`` decompressed.

    A compressed archive is decompressed as a stream, its pieces counted and dropped, and the
    count stops one piece past the limit: memory stays at a few megabytes whatever it holds.
    ``label`` names the archive in the message (the download stage names its source).
    """
    size = archive.stat().st_size
    if size > max_bytes:
        raise too_large(label or archive, f"is {size:,} bytes, over {{limit}}", max_bytes)
    module = _compression(archive)
    if module is None:
        return
    total = 0
    try:
        with module.open(archive, "rb") as stream:
            while chunk := stream.read(COUNT_CHUNK_BYTES):
                total += len(chunk)
                if total > max_bytes:
                    raise too_large(label or archive, "decompresses to more than {limit}",
                                    max_bytes)
    except ArchiveTooLargeError:
        raise
    except DECOMPRESSION_ERRORS as error:
        raise _corrupt(archive, error) from error


def _decompress(archive: Path) -> bytes:
    """The archive's bytes, gunzipped, bunzipped or unxz-ed according to its magic number."""
    module = _compression(archive)
    raw = archive.read_bytes()
    if module is None:
        return raw
    try:
        return module.decompress(raw)
    except DECOMPRESSION_ERRORS as error:
        raise _corrupt(archive, error) from error


def path_parts(name: str) -> tuple[str, ...]:
    """The components of a member's path, without empty and "." ones.

    String operations rather than pathlib, which is several times slower: this runs a few
    times for each of up to 60,000 members.
    """
    return tuple(part for part in name.split("/") if part not in ("", "."))


def regular_files(contents: TarContents) -> dict[str, tarfile.TarInfo]:
    """The archive's regular files by normalised path (a later duplicate wins, as in tar)."""
    return {
        "/".join(path_parts(member.name)): member for member in contents.members if member.isfile()
    }

"""Tar archives read in place, with every member checked first.

In:  the path of a tar archive (uncompressed, gzip, bzip2 or xz).
Out: `TarContents` (the decompressed bytes and the checked members), or ArchiveError for an
     unreadable or truncated archive and UnsafeArchiveError naming the first member that is
     not a regular file or directory inside the archive (absolute paths, '..', links,
     devices, FIFOs). `safe_extract` extracts such an archive atomically.

Shared by the download stage (which checks what it fetched) and the preprocess stage (which
reads the archive in place), so that neither stage imports the other.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path


class ArchiveError(ValueError):
    """The file is not a readable tar archive."""


class UnsafeArchiveError(ArchiveError):
    """The archive holds a member that could write outside its target or is not a plain file."""


# ---------------------------------------------------------------------------------------


def member_problem(member: tarfile.TarInfo) -> str | None:
    """Why ``member`` is unsafe to extract or read, or None if it is a safe file or directory."""
    # Plain string operations rather than pathlib: this runs once per member, 60,000 times
    # for an image folder, and pathlib would triple the time needed to read the archive.
    name = member.name.replace("\\", "/")
    if name.startswith("/") or name[1:2] == ":":
        return "has an absolute path"
    if ".." in name.split("/"):
        return "has a '..' component that could escape the target directory"
    if member.issym():
        return f"is a symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"is a hard link (to {member.linkname!r})"
    if member.ischr() or member.isblk():
        return "is a device file"
    if member.isfifo():
        return "is a FIFO"
    if member.issparse():
        return "is a sparse file"
    if not (member.isfile() or member.isdir()):
        return f"has an unsupported tar type {member.type!r}"
    return None


def check_member(member: tarfile.TarInfo, archive: Path | str) -> None:
    """Raise UnsafeArchiveError if ``member`` of ``archive`` is unsafe (see member_problem)."""
    problem = member_problem(member)
    if problem is not None:
        raise UnsafeArchiveError(
            f"Refusing the archive {archive}: its member {member.name!r} {problem}. Only "
            "regular files and directories with relative paths inside the archive are "
            "accepted. Point data.source (or data.url) at a trustworthy archive."
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

    def open(self) -> tarfile.TarFile:
        return tarfile.open(fileobj=io.BytesIO(self.data), mode="r:")


def read_archive(archive: Path) -> TarContents:
    """Decompress ``archive`` (tar, tar.gz, tar.bz2 or tar.xz) and check every member.

    Raises FileNotFoundError if it is missing, ArchiveError if it is not a tar archive or
    is truncated, and UnsafeArchiveError naming the first unsafe member. The whole archive
    is held in memory (about 180 MB for the official CIFAR-10 release).
    """
    archive = Path(archive)
    if not archive.is_file():
        raise FileNotFoundError(
            f"The archive {archive} does not exist. Run `lossbench download` (or "
            "`dvc repro download`) first."
        )
    data = _decompress(archive)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = tar.getmembers()
    except tarfile.TarError as error:
        raise ArchiveError(
            f"{archive} is not a readable tar archive (uncompressed, gzip, bzip2 or xz): "
            f"{error}. Check that data.source (or data.url) points at the dataset's archive."
        ) from error
    if not members:
        raise ArchiveError(f"{archive} is an empty tar archive. Check data.source (or data.url).")
    for member in members:
        check_member(member, archive)
        if member.isfile() and member.offset_data + member.size > len(data):
            raise ArchiveError(
                f"{archive} is truncated (its member {member.name!r} is cut short). Delete "
                "it and run `lossbench download` again."
            )
    return TarContents(data, members)


def _decompress(archive: Path) -> bytes:
    """The archive's bytes, gunzipped, bunzipped or unxz-ed according to its magic number."""
    raw = archive.read_bytes()
    try:
        if raw[:2] == b"\x1f\x8b":
            return gzip.decompress(raw)
        if raw[:3] == b"BZh":
            return bz2.decompress(raw)
        if raw[:6] == b"\xfd7zXZ\x00":
            return lzma.decompress(raw)
    except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as error:
        raise ArchiveError(
            f"{archive} is truncated or corrupt ({error}). Delete it and run "
            "`lossbench download` again."
        ) from error
    return raw


def check_members(archive: Path) -> None:
    """Raise UnsafeArchiveError on the first unsafe member, ArchiveError if unreadable."""
    read_archive(archive)


def safe_extract(archive: Path, target: Path) -> None:
    """Extract ``archive`` into the directory ``target`` after checking every member.

    ``target`` must not exist or be empty. The archive is extracted into a temporary
    directory beside ``target`` and renamed to it once complete.
    """
    archive, target = Path(archive), Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(
            f"{target} already exists and is not an empty directory; remove it or extract "
            "somewhere else."
        )
    contents = read_archive(archive)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        with contents.open() as tar:
            # The "data" filter re-checks what read_archive checked and also drops set-uid
            # bits and the like; the explicit check gives the clearer message.
            tar.extractall(staging, filter="data")
        os.chmod(staging, 0o755)  # mkdtemp makes it private to its owner.
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

"""Download (or copy) the data archive and verify it.

In: the ``download`` section of params.yaml, whose ``source`` (or, when that is null, ``url``)
names where the archive comes from:

* an ``http://``, ``https://`` or ``ftp://`` URL, streamed with retries and resumption;
* a ``file://`` URL or a local path to an archive (``.tar``, ``.tar.gz``, ...), copied;
* a local directory laid out as an image folder (``train/<class>/*`` and
  ``test/<class>/*``, possibly under one top-level folder), packed into an uncompressed tar.

Out: one tar archive at ``output``, verified against ``download.md5`` and/or ``download.sha256``
where they apply, and checked to hold only regular files and directories whose paths stay
inside the archive, and at most ``download.max_archive_bytes`` bytes, compressed or not (so a
decompression bomb is refused in seconds). A source that is neither a regular file nor a
directory (``/dev/zero``, a FIFO, a socket) is refused before it is opened, and a copy, a packed
directory or a download stops as soon as it passes the limit. The archive is written as
``<output>.part`` and renamed only once it is complete and verified, so ``output`` is either
absent or good. An interrupted network transfer keeps its ``<output>.part`` (and
``<output>.part.source``, the URL it came from), and the next run of the same URL resumes from
it.

The member checks (``read_archive``, ``check_members``) live in ``lossbench.io.archive``, which
the preprocess stage also uses to read the archive in place; the transfer itself, with its
retries and Range requests, lives in ``lossbench.download.network``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import tarfile
import urllib.parse
import urllib.request
from pathlib import Path

from lossbench.download.network import CHUNK_BYTES, LOCAL_COPY_SETTINGS, NETWORK_SCHEMES, download_url
from lossbench.io.archive import check_members, too_large

logger = logging.getLogger(__name__)


class ChecksumError(ValueError):
    """The archive's MD5 or SHA-256 differs from the one params.yaml expects."""


def run(download_params: dict, output: Path) -> Path:
    """Fetch the archive that ``download_params`` (params.yaml's ``download`` section) names.

    ``source`` replaces ``url`` where it is set; a relative local ``source`` is taken relative
    to the current working directory, which is the project root when the stage runs under
    Snakemake or DVC.
    """
    source = download_params.get("source")
    if source is None:
        source = download_params["url"]
    return fetch_archive(
        str(source),
        Path(output),
        md5=download_params.get("md5"),
        sha256=download_params.get("sha256"),
        max_bytes=download_params["max_archive_bytes"],
    )


def fetch_archive(
    source: str,
    output: Path,
    md5: str | None,
    sha256: str | None,
    *,
    max_bytes: int,
    retries: int = 5,
    backoff_seconds: float = 1.0,
    timeout_seconds: float = 30.0,
) -> Path:
    """Place a verified tar archive from ``source`` at ``output`` and return ``output``.

    ``max_bytes`` bounds the archive, compressed and decompressed
    (``download.max_archive_bytes``). ``retries`` is how many times a transient network failure
    is retried; the wait before retry ``k`` (1-based) is ``backoff_seconds * 2 ** (k - 1)``.
    ``timeout_seconds`` bounds each connect and each read. The archive is written to
    ``<output>.part`` and renamed to ``output`` only after its checksums and members have been
    checked; on any failure the partial file is removed and ``output`` is left as it was, except
    that an interrupted network transfer keeps its ``<output>.part`` for the next run to resume.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    # atomic.staged_file does not fit here: a resumable download needs a temporary name
    # that the next run can find, and one that survives an interruption.
    partial = output.with_name(output.name + ".part")
    partial_source = output.with_name(output.name + ".part.source")
    network = urllib.parse.urlsplit(source).scheme.lower() in NETWORK_SCHEMES
    _keep_only_a_resumable_partial(source, network, partial, partial_source)
    try:
        if network:
            _fetch_url(
                source,
                partial,
                partial_source,
                retries=retries,
                backoff_seconds=backoff_seconds,
                timeout_seconds=timeout_seconds,
                max_bytes=max_bytes,
            )
            _verify_checksums(partial, source, md5=md5, sha256=sha256)
        else:
            _fetch_local(source, partial, md5=md5, sha256=sha256, max_bytes=max_bytes)
        check_members(partial, max_bytes, label=f"the archive from {source}")
        os.replace(partial, output)
        partial_source.unlink(missing_ok=True)
    except BaseException as error:
        # Whatever went wrong, no half-written or unverified file is left under the output's
        # name. Only an interrupted network transfer keeps its `.part` to resume from.
        interrupted = isinstance(error, (ConnectionError, KeyboardInterrupt))
        if not (interrupted and network and partial.is_file() and partial.stat().st_size):
            partial.unlink(missing_ok=True)
            partial_source.unlink(missing_ok=True)
        if type(error) is OSError and error.filename is None and error.errno is not None:
            # A write the system refused ("File too large" under `ulimit -f`) names no file.
            raise OSError(error.errno, error.strerror, str(partial)) from error
        raise
    logger.info("Archive ready at %s (%s bytes).", output, f"{output.stat().st_size:,}")
    return output


def _keep_only_a_resumable_partial(
    source: str, network: bool, partial: Path, partial_source: Path
) -> None:
    """Delete a leftover ``partial`` unless it is an interrupted download of ``source``.

    ``partial_source`` names the URL a partial download came from. An interrupted download
    of the same URL is resumed (the archive is 170 MB); a leftover of any other source is
    discarded.
    """
    resumable = (
        network
        and partial.is_file()
        and partial_source.is_file()
        and partial_source.read_text() == source
    )
    if resumable:
        logger.info("Resuming an earlier, interrupted download of %s (%s bytes held).",
                    source, f"{partial.stat().st_size:,}")
    else:
        partial.unlink(missing_ok=True)
        partial_source.unlink(missing_ok=True)


def _fetch_url(
    url: str, partial: Path, partial_source: Path, **transfer_options: float
) -> None:
    """Download ``url`` into ``partial``, noting the URL in ``partial_source`` for resuming."""
    partial_source.write_text(url)
    try:
        download_url(url, partial, **transfer_options)
    except (ConnectionError, KeyboardInterrupt):
        # Keep what arrived, under its temporary name, for the next run to resume.
        if partial.is_file() and partial.stat().st_size:
            logger.warning("Kept %s bytes in %s; the next run resumes from there.",
                           f"{partial.stat().st_size:,}", partial)
        raise


def _fetch_local(
    source: str, partial: Path, *, md5: str | None, sha256: str | None, max_bytes: int
) -> None:
    """Copy the archive, or pack the image-folder directory, that ``source`` names."""
    local_path = _local_path(source)
    if not local_path.is_dir():
        _copy_file(local_path, partial, max_bytes)
        _verify_checksums(partial, source, md5=md5, sha256=sha256)
        return
    _pack_directory(local_path, partial, max_bytes)
    if md5 is not None or sha256 is not None:
        logger.info(
            "download.source %s is a directory, so download.md5 and download.sha256 do not apply: it was "
            "packed into a new tar archive without a checksum check.",
            local_path,
        )
    else:
        logger.info("Packed the directory %s without a checksum check.", local_path)


# ---------------------------------------------------------------------------------------
# Checksums
# ---------------------------------------------------------------------------------------


def file_digests(path: Path) -> dict[str, str]:
    """The MD5 and SHA-256 hex digests of the file at ``path``, read once."""
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            md5.update(chunk)
            sha256.update(chunk)
    return {"md5": md5.hexdigest(), "sha256": sha256.hexdigest()}


def _verify_checksums(path: Path, source: str, md5: str | None, sha256: str | None) -> None:
    if md5 is None and sha256 is None:
        logger.warning(
            "Neither download.md5 nor download.sha256 is set, so the archive from %s is UNVERIFIED. "
            "Set download.sha256 in params.yaml to its checksum (`sha256sum ARCHIVE`).",
            source,
        )
        return
    actual = file_digests(path)
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected is None:
            continue
        if actual[algorithm] != expected.lower():
            path.unlink(missing_ok=True)
            raise ChecksumError(
                f"The archive from {source} has {algorithm.upper()} {actual[algorithm]}, but "
                f"download.{algorithm} in params.yaml expects {expected.lower()}. If the download "
                "was corrupted, run the stage again. If download.source points at another "
                f"archive on purpose, set download.{algorithm} to {actual[algorithm]} (or null) "
                f"and check the other settings of a local copy. {LOCAL_COPY_SETTINGS}"
            )
    logger.info(
        "Checksum verified (%s).",
        ", ".join(name for name, value in (("MD5", md5), ("SHA-256", sha256)) if value),
    )


# ---------------------------------------------------------------------------------------
# Local sources
# ---------------------------------------------------------------------------------------


def _local_path(source: str) -> Path:
    """The local path a ``file://`` URL or a plain path names; FileNotFoundError if absent."""
    parts = urllib.parse.urlsplit(source)
    if parts.scheme.lower() == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(
                f"download.source {source!r} names the remote host {parts.netloc!r}; a file:// "
                "URL must name a local file (file:///absolute/path)."
            )
        path = Path(urllib.request.url2pathname(parts.path))
    elif len(parts.scheme) > 1:
        raise ValueError(
            f"download.source/download.url {source!r} uses the unsupported scheme {parts.scheme!r}; "
            "use http(s)://, ftp://, file:// or a local path."
        )
    else:
        # No scheme (or a one-letter Windows drive): a path, relative to the project root.
        path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"download.source {source!r} does not exist (looked for {path.absolute()}). A relative "
            "path is taken from the project root; fix download.source in params.yaml, or set it to "
            "null to download download.url."
            + (" This run is in a copy of the project (`dvc exp run --temp` or --queue run "
               "experiments under .dvc/tmp/exps/), so a path relative to your checkout does not "
               "reach it: give download.source as an absolute path, e.g. "
               f"-S download.source=$PWD/{source}." if not path.is_absolute() and
               ".dvc/tmp/exps" in Path.cwd().as_posix() else "")
        )
    mode = path.stat().st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        # Checked before opening: reading /dev/zero never ends, opening a FIFO waits forever.
        raise ValueError(
            f"download.source {source!r} is {_special_kind(mode)}, not an archive file or a "
            "directory, so it is not read. Point download.source at an archive (a regular "
            "file) or at an image-folder directory."
        )
    return path


def _special_kind(mode: int) -> str:
    kinds = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a special file")


def _copy_file(path: Path, destination: Path, max_bytes: int) -> None:
    """Copy ``path`` to ``destination``, stopping once more than ``max_bytes`` arrived."""
    size = path.stat().st_size
    if size > max_bytes:
        raise too_large(path, f"is {size:,} bytes, over {{limit}}", max_bytes)
    logger.info("Copying the archive %s.", path)
    copied = 0
    with path.open("rb") as reader, destination.open("wb") as writer:
        while chunk := reader.read(CHUNK_BYTES):
            copied += len(chunk)
            if copied > max_bytes:  # the file grew while it was copied
                raise too_large(path, "grew past {limit} while being copied", max_bytes)
            writer.write(chunk)


def _check_image_folder_layout(directory: Path) -> None:
    """Raise ValueError unless ``directory`` or its only subfolder holds train/ and test/."""
    if (directory / "train").is_dir() and (directory / "test").is_dir():
        return
    subfolders = [entry for entry in directory.iterdir() if entry.is_dir()]
    if len(subfolders) == 1:
        inner = subfolders[0]
        if (inner / "train").is_dir() and (inner / "test").is_dir():
            return
    raise ValueError(
        f"The directory {directory} (download.source) is not laid out as an image folder: it "
        "needs train/<class>/<image> and test/<class>/<image>, directly inside it or inside "
        "its only subfolder. Point download.source at such a directory or at an archive."
    )


def _pack_directory(directory: Path, destination: Path, max_bytes: int) -> None:
    """Pack an image-folder directory into an uncompressed, reproducible tar.

    Entries are added in sorted order with fixed owners, modes and times, so the same
    images always give the same bytes (and the same DVC hash). Symbolic links inside the
    directory are followed and stored as the files they point to; special files (devices,
    FIFOs) are left out, and packing stops once the files pass ``max_bytes``.
    """
    _check_image_folder_layout(directory)
    logger.info("Packing the image folder %s into a tar archive.", directory)
    files = packed = 0
    with tarfile.open(destination, "w", format=tarfile.PAX_FORMAT) as tar:
        for folder, subfolders, filenames in os.walk(directory, followlinks=True):
            subfolders.sort()
            relative_folder = Path(folder).relative_to(directory)
            if relative_folder != Path("."):
                tar.addfile(_fixed_info(relative_folder.as_posix(), tarfile.DIRTYPE, 0))
            for filename in sorted(filenames):
                path = Path(folder) / filename
                status = path.stat()
                if not stat.S_ISREG(status.st_mode):
                    continue
                info = _fixed_info(
                    (relative_folder / filename).as_posix(), tarfile.REGTYPE, status.st_size
                )
                packed += status.st_size
                if packed > max_bytes:
                    raise too_large(directory, "holds more files than {limit} allows",
                                    max_bytes)
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
                files += 1
    logger.info("Packed %s files.", f"{files:,}")


def _fixed_info(name: str, kind: bytes, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info

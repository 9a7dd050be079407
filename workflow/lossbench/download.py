"""Download (or copy) the data archive and verify it.

In: the ``data`` section of params.yaml, whose ``source`` (or, when that is null, ``url``)
names where the archive comes from:

* an ``http://``, ``https://`` or ``ftp://`` URL, streamed with retries and resumption;
* a ``file://`` URL or a local path to an archive (``.tar``, ``.tar.gz``, ...), copied;
* a local directory laid out as an image folder (``train/<class>/*`` and
  ``test/<class>/*``, possibly under one top-level folder), packed into an uncompressed tar.

Out: one tar archive at ``output``, verified against ``data.md5`` and/or ``data.sha256``
where they apply, and checked to hold only regular files and directories whose paths stay
inside the archive. The archive is written as ``<output>.part`` and renamed only once it is
complete and verified, so ``output`` is either absent or good.

The member checks (``read_archive``, ``check_members``, ``safe_extract``) live in
``lossbench.archive``, which the preprocess stage also uses to read the archive in place.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import logging
import os
import shutil
import socket
import stat
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from lossbench import __version__
# Archive reading and its checks are shared with preprocess; re-exported here for callers that
# meet them through this stage.
from lossbench.archive import (  # noqa: F401
    ArchiveError,
    TarContents,
    UnsafeArchiveError,
    check_member,
    check_members,
    member_problem,
    read_archive,
    safe_extract,
)

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
"""Bytes read from the network or disk at a time."""

NETWORK_SCHEMES = ("http", "https", "ftp")

# HTTP statuses worth retrying: the server or a proxy is busy or briefly broken.
TRANSIENT_HTTP_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class ChecksumError(ValueError):
    """The archive's MD5 or SHA-256 differs from the one params.yaml expects."""


class _TransientError(Exception):
    """A failure a later attempt may not meet: a truncated body, a reset or a 5xx answer."""


class _UnreachableError(Exception):
    """The host refused the connection or its name did not resolve."""


def run(data_params: dict, output: Path) -> Path:
    """Fetch the archive that ``data_params`` (params.yaml's ``data`` section) names.

    ``data.source`` replaces ``data.url`` where it is set; a relative local ``source`` is
    taken relative to the current working directory, which is the project root when the
    stage runs under Snakemake or DVC.
    """
    source = data_params.get("source")
    if source is None:
        source = data_params["url"]
    return fetch_archive(
        str(source),
        Path(output),
        md5=data_params.get("md5"),
        sha256=data_params.get("sha256"),
    )


def fetch_archive(
    source: str,
    output: Path,
    md5: str | None,
    sha256: str | None,
    *,
    retries: int = 5,
    backoff_seconds: float = 1.0,
    timeout_seconds: float = 30.0,
) -> Path:
    """Place a verified tar archive from ``source`` at ``output`` and return ``output``.

    ``retries`` is how many times a transient network failure is retried; the wait before
    retry ``k`` (1-based) is ``backoff_seconds * 2 ** (k - 1)``. ``timeout_seconds`` bounds
    each connect and each read. The archive is written to ``<output>.part`` and renamed to
    ``output`` only after its checksums and members have been checked; on any failure the
    partial file is removed and ``output`` is left as it was.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".part")
    # `<output>.part.source` names the URL a partial download came from. An interrupted
    # download of the same URL is resumed on the next run (the archive is 170 MB); a leftover
    # of any other source is discarded.
    partial_source = output.with_name(output.name + ".part.source")
    scheme = urllib.parse.urlsplit(source).scheme.lower()
    resumable = (
        scheme in NETWORK_SCHEMES
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

    try:
        if scheme in NETWORK_SCHEMES:
            partial_source.write_text(source)
            try:
                _download(
                    source,
                    partial,
                    retries=retries,
                    backoff_seconds=backoff_seconds,
                    timeout_seconds=timeout_seconds,
                )
            except (ConnectionError, KeyboardInterrupt):
                # Keep what arrived, under its temporary name, for the next run to resume.
                if partial.is_file() and partial.stat().st_size:
                    logger.warning("Kept %s bytes in %s; the next run resumes from there.",
                                   f"{partial.stat().st_size:,}", partial)
                raise
            _verify_checksums(partial, source, md5=md5, sha256=sha256)
        else:
            local_path = _local_path(source)
            if local_path.is_dir():
                _pack_directory(local_path, partial)
                if md5 is not None or sha256 is not None:
                    logger.info(
                        "data.source %s is a directory, so data.md5 and data.sha256 do not "
                        "apply: it was packed into a new tar archive without a checksum check.",
                        local_path,
                    )
                else:
                    logger.info("Packed the directory %s without a checksum check.", local_path)
            else:
                _copy_file(local_path, partial)
                _verify_checksums(partial, source, md5=md5, sha256=sha256)
        check_members(partial)
        os.replace(partial, output)
        partial_source.unlink(missing_ok=True)
    except BaseException as error:
        # Whatever went wrong, no half-written or unverified file is left under the output's
        # name. Only an interrupted network transfer keeps its `.part` to resume from.
        interrupted = isinstance(error, (ConnectionError, KeyboardInterrupt))
        if not (interrupted and scheme in NETWORK_SCHEMES and partial.is_file()
                and partial.stat().st_size):
            partial.unlink(missing_ok=True)
            partial_source.unlink(missing_ok=True)
        raise
    logger.info("Archive ready at %s (%s bytes).", output, f"{output.stat().st_size:,}")
    return output


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
            "Neither data.md5 nor data.sha256 is set, so the archive from %s is UNVERIFIED. "
            "Set data.sha256 in params.yaml to its checksum (`sha256sum ARCHIVE`).",
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
                f"data.{algorithm} in params.yaml expects {expected.lower()}. If the download "
                "was corrupted, run the stage again; if data.source points at a different "
                f"archive on purpose, set data.{algorithm} to its checksum."
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
                f"data.source {source!r} names the remote host {parts.netloc!r}; a file:// "
                "URL must name a local file (file:///absolute/path)."
            )
        path = Path(urllib.request.url2pathname(parts.path))
    elif len(parts.scheme) > 1:
        raise ValueError(
            f"data.source/data.url {source!r} uses the unsupported scheme {parts.scheme!r}; "
            "use http(s)://, ftp://, file:// or a local path."
        )
    else:
        # No scheme (or a one-letter Windows drive): a path, relative to the project root.
        path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"data.source {source!r} does not exist (looked for {path.absolute()}). A relative "
            "path is taken from the project root; fix data.source in params.yaml, or set it to "
            "null to download data.url."
        )
    return path


def _copy_file(path: Path, destination: Path) -> None:
    logger.info("Copying the archive %s.", path)
    with path.open("rb") as reader, destination.open("wb") as writer:
        shutil.copyfileobj(reader, writer, CHUNK_BYTES)


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
        f"The directory {directory} (data.source) is not laid out as an image folder: it "
        "needs train/<class>/<image> and test/<class>/<image>, directly inside it or inside "
        "its only subfolder. Point data.source at such a directory or at an archive."
    )


def _pack_directory(directory: Path, destination: Path) -> None:
    """Pack an image-folder directory into an uncompressed, reproducible tar.

    Entries are added in sorted order with fixed owners, modes and times, so the same
    images always give the same bytes (and the same DVC hash). Symbolic links inside the
    directory are followed and stored as the files they point to.
    """
    _check_image_folder_layout(directory)
    logger.info("Packing the image folder %s into a tar archive.", directory)
    files = 0
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


# ---------------------------------------------------------------------------------------
# Network sources
# ---------------------------------------------------------------------------------------


def _download(
    url: str, partial: Path, *, retries: int, backoff_seconds: float, timeout_seconds: float
) -> None:
    """Stream ``url`` into ``partial``, retrying transient failures and resuming with Range."""
    host = urllib.parse.urlsplit(url).hostname or url
    attempt = 0
    reached_server = False
    while True:
        attempt += 1
        try:
            _download_attempt(url, partial, timeout_seconds=timeout_seconds)
            return
        except _UnreachableError as error:
            if not reached_server:
                # A refused connection or an unknown name rarely heals within seconds, and
                # offline machines are common: allow one quick retry, then say what to do.
                if attempt >= 2:
                    raise ConnectionError(
                        f"Could not reach the host {host!r} to download {url} ({error}). If "
                        "this machine is offline, set data.source in params.yaml to a local "
                        "copy of the archive (a path, relative to the project root)."
                    ) from error
                time.sleep(min(backoff_seconds, 1.0))
                continue
            last_error: Exception = error
        except _TransientError as error:
            reached_server = True
            last_error = error
        if attempt > retries:
            raise ConnectionError(
                f"Downloading {url} failed after {attempt} attempts; the last error was: "
                f"{last_error}. Try again later, or set data.source in params.yaml to a local "
                "copy of the archive."
            ) from last_error
        wait = backoff_seconds * 2 ** (attempt - 1)
        logger.warning(
            "Download attempt %d of %d failed (%s); retrying in %.1f s.",
            attempt,
            retries + 1,
            last_error,
            wait,
        )
        time.sleep(wait)


def _download_attempt(url: str, partial: Path, *, timeout_seconds: float) -> None:
    """One request: resume from ``partial``'s size where the server allows, else restart."""
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": f"lossbench/{__version__}"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout_seconds)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and have:
            # The server will not serve the rest of what we hold; start again from zero.
            partial.unlink(missing_ok=True)
            raise _TransientError(f"HTTP 416 for a resumed request at byte {have}") from error
        if error.code in TRANSIENT_HTTP_STATUSES:
            raise _TransientError(f"HTTP {error.code} {error.reason}") from error
        raise ConnectionError(
            f"The server answered HTTP {error.code} ({error.reason}) for {url}. Check data.url, "
            "or set data.source in params.yaml to a local copy of the archive."
        ) from error
    except urllib.error.URLError as error:
        raise _classify_os_error(error.reason) from error
    except (http.client.HTTPException, OSError) as error:
        raise _classify_os_error(error) from error

    with response:
        status = getattr(response, "status", None)
        if have and status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {have}-"):
                # The server sent some other part of the file; appending it would corrupt
                # the download, so start again from zero.
                partial.unlink(missing_ok=True)
                sent = content_range or "no Content-Range"
                raise _TransientError(f"asked for bytes {have}- but the server sent {sent}")
            mode = "ab"
            logger.info("Resuming the download at byte %s.", f"{have:,}")
        else:
            # A 200 answer to a Range request carries the whole file: restart from zero.
            mode, have = "wb", 0
        length = response.headers.get("Content-Length")
        expected_total = have + int(length) if length and length.isdigit() else None
        received = have
        with (
            partial.open(mode) as handle,
            tqdm(
                total=expected_total,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=PurePosixPath(urllib.parse.urlsplit(url).path).name or "download",
                disable=None,  # No bar when stderr is not a terminal (Snakemake or DVC logs).
                leave=False,
            ) as progress,
        ):
            while True:
                try:
                    chunk = response.read(CHUNK_BYTES)
                except (http.client.HTTPException, OSError) as error:
                    # IncompleteRead, resets and read timeouts: keep what arrived, resume later.
                    # Only reading is guarded, so that a full disk is not retried as a network
                    # failure.
                    raise _TransientError(f"{type(error).__name__}: {error}") from error
                if not chunk:
                    break
                handle.write(chunk)
                received += len(chunk)
                progress.update(len(chunk))
    if expected_total is not None and received < expected_total:
        raise _TransientError(
            f"the connection closed after {received:,} of {expected_total:,} bytes"
        )


def _classify_os_error(reason: object) -> Exception:
    """Map the reason of a failed connection to _UnreachableError or _TransientError."""
    unreachable = (errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH)
    if isinstance(reason, socket.gaierror) or (
        isinstance(reason, OSError) and reason.errno in unreachable
    ):
        return _UnreachableError(str(reason))
    return _TransientError(f"{type(reason).__name__}: {reason}")

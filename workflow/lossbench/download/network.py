"""Stream a URL into a local file, retrying transient failures and resuming with Range.

In:  an ``http://``, ``https://`` or ``ftp://`` URL, the path of a partial file (absent, or
     holding the first bytes of an earlier, interrupted transfer of the same URL), and the
     retry, back-off and timeout settings, and the most bytes the file may hold.
Out: the partial file, complete; or ConnectionError saying what failed and what to do (retry
     later, or use a local copy, with every setting that takes: `LOCAL_COPY_SETTINGS`), or
     ArchiveTooLargeError once the server announces or sends more than the limit. Bytes that
     arrived before a failure stay in the partial file, so that a later call resumes from them.

Used by the download stage, which names the partial file and decides when to keep it.
"""

from __future__ import annotations

import errno
import http.client
import logging
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from tqdm import tqdm

from lossbench import __version__
from lossbench.io.archive import too_large

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
"""Bytes read from the network or disk at a time."""

NETWORK_SCHEMES = ("http", "https", "ftp")

# What a user without the network (or with another copy of the data) must set, in full: every
# message that suggests a local copy names all of it, so that one try is enough. Which values
# belong to which copy cannot be guessed, so it names the keys and what each one takes.
LOCAL_COPY_SETTINGS = (
    "A local copy of the data needs four settings in params.yaml: download.source (its path, "
    "relative to the project root, or a URL), download.md5 and download.sha256 (its checksums, "
    "from `md5sum` and `sha256sum`, or null to skip either check), and preprocess.dataset "
    "(cifar10 or cifar100 for a copy of the official python release, image_folder for an "
    "archive or directory of train/<class>/* and test/<class>/* images). README: \"Using a "
    "local copy of the data\"; for the JPEG copy beside the checkout, `lossbench use-params "
    "workflow/params/local-copy.yaml` sets all four."
)

# HTTP statuses worth retrying: the server or a proxy is busy or briefly broken.
TRANSIENT_HTTP_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class _TransientError(Exception):
    """A failure a later attempt may not meet: a truncated body, a reset or a 5xx answer."""


class _UnreachableError(Exception):
    """The host refused the connection or its name did not resolve."""


def download_url(
    url: str, partial: Path, *, retries: int, backoff_seconds: float, timeout_seconds: float,
    max_bytes: int | None = None,
) -> None:
    """Stream ``url`` into ``partial``, retrying transient failures and resuming with Range.

    ``retries`` is how many times a transient failure is retried; the wait before retry
    ``k`` (1-based) is ``backoff_seconds * 2 ** (k - 1)``. ``timeout_seconds`` bounds each
    connect and each read. ``max_bytes`` (None = no limit) bounds the file.
    """
    host = urllib.parse.urlsplit(url).hostname or url
    attempt = 0
    reached_server = False
    while True:
        attempt += 1
        try:
            _download_attempt(url, partial, timeout_seconds=timeout_seconds, max_bytes=max_bytes)
            return
        except _UnreachableError as error:
            if not reached_server:
                # A refused connection or an unknown name rarely heals within seconds, and
                # offline machines are common: allow one quick retry, then say what to do.
                if attempt >= 2:
                    raise ConnectionError(
                        f"Could not reach the host {host!r} to download {url} ({error}). If "
                        f"this machine is offline, use a local copy of the archive. {LOCAL_COPY_SETTINGS}"
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
                f"{last_error}. Try again later, or use a local copy of the archive. "
                f"{LOCAL_COPY_SETTINGS}"
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


def _download_attempt(
    url: str, partial: Path, *, timeout_seconds: float, max_bytes: int | None = None
) -> None:
    """One request: resume from ``partial``'s size where the server allows, else restart."""
    have = partial.stat().st_size if partial.exists() else 0
    response = _open(url, partial, have, timeout_seconds=timeout_seconds)
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
        if max_bytes is not None and expected_total is not None and expected_total > max_bytes:
            raise too_large(url, f"is announced as {expected_total:,} bytes, over {{limit}}",
                            max_bytes)
        with partial.open(mode) as handle:
            received = have + _stream(response, handle, url, have=have, total=expected_total,
                                      max_bytes=max_bytes)
    if expected_total is not None and received < expected_total:
        raise _TransientError(
            f"the connection closed after {received:,} of {expected_total:,} bytes"
        )


def _open(url: str, partial: Path, have: int, *, timeout_seconds: float):
    """Send the request (a Range request from byte ``have`` when it is not 0); the response."""
    request = urllib.request.Request(url, headers={"User-Agent": f"lossbench/{__version__}"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout_seconds)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and have:
            # The server will not serve the rest of what we hold; start again from zero.
            partial.unlink(missing_ok=True)
            raise _TransientError(f"HTTP 416 for a resumed request at byte {have}") from error
        if error.code in TRANSIENT_HTTP_STATUSES:
            raise _TransientError(f"HTTP {error.code} {error.reason}") from error
        raise ConnectionError(
            f"The server answered HTTP {error.code} ({error.reason}) for {url}. Check download.url, "
            f"or use a local copy of the archive. {LOCAL_COPY_SETTINGS}"
        ) from error
    except urllib.error.URLError as error:
        raise _classify_os_error(error.reason) from error
    except (http.client.HTTPException, OSError) as error:
        raise _classify_os_error(error) from error


def _stream(response, handle: BinaryIO, url: str, *, have: int, total: int | None,
            max_bytes: int | None = None) -> int:
    """Copy the response's body into ``handle`` with a progress bar; the bytes copied."""
    copied = 0
    with tqdm(
        total=total,
        initial=have,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=PurePosixPath(urllib.parse.urlsplit(url).path).name or "download",
        disable=None,  # No bar when stderr is not a terminal (Snakemake or DVC logs).
        leave=False,
    ) as progress:
        while True:
            try:
                chunk = response.read(CHUNK_BYTES)
            except (http.client.HTTPException, OSError) as error:
                # IncompleteRead, resets and read timeouts: keep what arrived, resume later.
                # Only reading is guarded, so that a full disk is not retried as a network
                # failure.
                raise _TransientError(f"{type(error).__name__}: {error}") from error
            if not chunk:
                return copied
            if max_bytes is not None and have + copied + len(chunk) > max_bytes:
                raise too_large(url, "sends more than {limit}", max_bytes)
            handle.write(chunk)
            copied += len(chunk)
            progress.update(len(chunk))


def _classify_os_error(reason: object) -> Exception:
    """Map the reason of a failed connection to _UnreachableError or _TransientError."""
    unreachable = (errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH)
    if isinstance(reason, socket.gaierror) or (
        isinstance(reason, OSError) and reason.errno in unreachable
    ):
        return _UnreachableError(str(reason))
    return _TransientError(f"{type(reason).__name__}: {reason}")

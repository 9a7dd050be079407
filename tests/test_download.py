"""Tests of lossbench.download against a real HTTP server on 127.0.0.1, and local sources.

Every test is offline: the server runs in a thread of the test process on an ephemeral
port, and each test decides per path how it answers (whole file, truncated body, dropped
connection, error status).
"""

from __future__ import annotations

import hashlib
import logging
import re
import socket
import struct
import tarfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from archives import (
    UNSAFE_KINDS,
    make_evil_archive,
    make_image_folder_archive,
    make_symlink_archive,
    make_unsafe_archive,
    prepare_with_defaults,
    write_image_folder,
)
from lossbench import download, preprocess
from lossbench.download import ChecksumError
from lossbench.io import archive as archive_io
from lossbench.io.archive import ArchiveError, UnsafeArchiveError, regular_files
from lossbench.io.prepared import load_prepared
from lossbench.pipeline.params import with_defaults

FAST = {"retries": 3, "backoff_seconds": 0.001, "timeout_seconds": 5.0}
# The archive functions take the size limit explicitly (its one default is the schema's
# download.max_archive_bytes); these tests pass the schema's value unless they test the limit.
ARCHIVE_LIMIT = with_defaults("download", {})["max_archive_bytes"]


def fetch_archive(*arguments, max_bytes: int = ARCHIVE_LIMIT, **keywords):
    return download.fetch_archive(*arguments, max_bytes=max_bytes, **keywords)


def check_members(archive: Path) -> None:
    archive_io.check_members(archive, ARCHIVE_LIMIT)


def read_archive(archive: Path):
    return archive_io.read_archive(archive, ARCHIVE_LIMIT)


def digests(path: Path) -> tuple[str, str]:
    payload = path.read_bytes()
    return hashlib.md5(payload).hexdigest(), hashlib.sha256(payload).hexdigest()


def leftovers(directory: Path) -> list[str]:
    """Names of temporary files a fetch may have left behind."""
    return sorted(
        path.name for path in directory.iterdir() if path.name.endswith((".part", ".tmp"))
    )


# ---------------------------------------------------------------------------------------
# The test server
# ---------------------------------------------------------------------------------------


Behaviour = Callable[[BaseHTTPRequestHandler, int], None]


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server: TestServer = self.server.owner  # type: ignore[attr-defined]
        with server.lock:
            server.requests.append({"path": self.path, "range": self.headers.get("Range")})
            number = sum(1 for request in server.requests if request["path"] == self.path)
        behaviour = server.behaviours.get(self.path)
        if behaviour is None:
            self.send_error(404)
            return
        behaviour(self, number)

    def log_message(self, format: str, *args) -> None:
        pass  # Keep the test output clean.


class TestServer:
    """An HTTP server whose answer to each path is a behaviour(handler, request_number)."""

    __test__ = False  # Not a test class, despite the name.

    def __init__(self) -> None:
        self.behaviours: dict[str, Behaviour] = {}
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def requests_for(self, path: str) -> list[dict]:
        return [request for request in self.requests if request["path"] == path]


@pytest.fixture
def server(monkeypatch):
    # A proxy from the environment would send requests for 127.0.0.1 elsewhere.
    for name in (
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)
    test_server = TestServer()
    test_server.thread.start()
    yield test_server
    test_server.httpd.shutdown()
    test_server.httpd.server_close()


def _send_body(handler: BaseHTTPRequestHandler, payload: bytes, start: int, status: int) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/octet-stream")
    handler.send_header("Content-Length", str(len(payload) - start))
    if status == 206:
        handler.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
    handler.end_headers()
    handler.wfile.write(payload[start:])


def _range_start(handler: BaseHTTPRequestHandler) -> int | None:
    value = handler.headers.get("Range")
    if value and value.startswith("bytes=") and value.endswith("-"):
        return int(value[len("bytes=") : -1])
    return None


def serve(payload: bytes, honour_range: bool = True) -> Behaviour:
    """Serve ``payload`` whole, or from the requested byte with 206 where ``honour_range``."""

    def behaviour(handler: BaseHTTPRequestHandler, number: int) -> None:
        start = _range_start(handler) if honour_range else None
        if start:
            _send_body(handler, payload, start, 206)
        else:
            _send_body(handler, payload, 0, 200)

    return behaviour


def truncate(payload: bytes, keep: int) -> None:
    """Promise the whole ``payload`` but send only its first ``keep`` bytes, then close."""

    def behaviour(handler: BaseHTTPRequestHandler, number: int) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload[:keep])
        handler.wfile.flush()
        handler.close_connection = True

    return behaviour


def first_then(first: Behaviour, rest: Behaviour, times: int = 1) -> Behaviour:
    """Answer the first ``times`` requests with ``first`` and later ones with ``rest``."""

    def behaviour(handler: BaseHTTPRequestHandler, number: int) -> None:
        (first if number <= times else rest)(handler, number)

    return behaviour


def reset_after(payload: bytes, keep: int) -> Behaviour:
    """Send ``keep`` bytes of ``payload``, then reset the connection (TCP RST)."""

    def behaviour(handler: BaseHTTPRequestHandler, number: int) -> None:
        truncate(payload, keep)(handler, number)
        # SO_LINGER with a zero timeout makes close() send a reset instead of a clean FIN.
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    return behaviour


def status(code: int) -> Behaviour:
    def behaviour(handler: BaseHTTPRequestHandler, number: int) -> None:
        handler.send_error(code)

    return behaviour


@pytest.fixture
def payload_archive(tmp_path) -> Path:
    """A small valid image-folder tar.gz (a few kilobytes)."""
    source = tmp_path / "source"
    source.mkdir()
    return make_image_folder_archive(source).path


# ---------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------


def test_http_download_verifies_and_lands(server, payload_archive, tmp_path):
    payload = payload_archive.read_bytes()
    server.behaviours["/data.tar.gz"] = serve(payload)
    md5, sha256 = digests(payload_archive)
    output = tmp_path / "out" / "archive.tar.gz"

    result = fetch_archive(server.url("/data.tar.gz"), output, md5=md5, sha256=sha256, **FAST)

    assert result == output
    assert output.read_bytes() == payload
    assert leftovers(output.parent) == []
    assert len(server.requests) == 1


def test_a_download_stops_at_download_max_archive_bytes(server, payload_archive, tmp_path):
    """Issue 20, D9/D10: a server that announces, or sends without announcing, more than the
    limit is cut off there rather than filling the disk."""
    server.behaviours["/data.tar.gz"] = serve(payload_archive.read_bytes())

    def endless(handler: BaseHTTPRequestHandler, number: int) -> None:
        handler.send_response(200)
        handler.end_headers()  # no Content-Length
        try:
            for _ in range(8):
                handler.wfile.write(bytes(1 << 20))
        except (ConnectionResetError, BrokenPipeError):
            pass  # the client hangs up at the limit, as it should: no traceback in the log

    server.behaviours["/endless"] = endless
    output = tmp_path / "archive.tar.gz"
    size = payload_archive.stat().st_size

    with pytest.raises(ArchiveError, match=rf"is announced as {size:,} bytes, over download.max_archive_bytes"):
        fetch_archive(server.url("/data.tar.gz"), output, None, None, max_bytes=size - 1, **FAST)
    with pytest.raises(ArchiveError, match=r"sends more than download.max_archive_bytes \(1,000,000 bytes\)"):
        fetch_archive(server.url("/endless"), output, None, None, max_bytes=1_000_000, **FAST)
    assert leftovers(tmp_path) == [] and not output.exists()


@pytest.mark.parametrize("which", ["md5", "sha256"])
def test_wrong_checksum_leaves_nothing(server, payload_archive, tmp_path, which):
    server.behaviours["/data.tar.gz"] = serve(payload_archive.read_bytes())
    md5, sha256 = digests(payload_archive)
    expected = {"md5": md5, "sha256": sha256}
    expected[which] = "0" * len(expected[which])
    output = tmp_path / "archive.tar.gz"

    with pytest.raises(ChecksumError) as error:
        fetch_archive(server.url("/data.tar.gz"), output, **expected, **FAST)

    message = str(error.value)
    assert f"download.{which}" in message
    assert "0" * len(expected[which]) in message  # the expected digest
    assert (md5 if which == "md5" else sha256) in message  # the actual digest
    assert not output.exists()
    assert leftovers(tmp_path) == []


def test_truncated_every_time_fails_after_retries(server, payload_archive, tmp_path):
    payload = payload_archive.read_bytes()
    server.behaviours["/data.tar.gz"] = truncate(payload, keep=len(payload) // 2)
    output = tmp_path / "archive.tar.gz"

    with pytest.raises(ConnectionError) as error:
        fetch_archive(
            server.url("/data.tar.gz"), output, md5=digests(payload_archive)[0], sha256=None, **FAST
        )

    assert "after 4 attempts" in str(error.value)
    assert "download.source" in str(error.value)
    assert len(server.requests) == FAST["retries"] + 1
    assert not output.exists()
    # What arrived stays under the temporary name, so that the next run can resume it.
    assert leftovers(tmp_path) == ["archive.tar.gz.part"]


def test_a_later_run_resumes_an_interrupted_download(server, payload_archive, tmp_path):
    payload = payload_archive.read_bytes()
    keep = len(payload) // 2
    server.behaviours["/data.tar.gz"] = truncate(payload, keep=keep)
    output = tmp_path / "archive.tar.gz"
    md5 = digests(payload_archive)[0]
    with pytest.raises(ConnectionError):
        fetch_archive(server.url("/data.tar.gz"), output, md5=md5, sha256=None, **FAST)
    server.requests.clear()
    server.behaviours["/data.tar.gz"] = serve(payload)

    fetch_archive(server.url("/data.tar.gz"), output, md5=md5, sha256=None, **FAST)

    assert output.read_bytes() == payload
    assert [request["range"] for request in server.requests] == [f"bytes={keep}-"]
    assert leftovers(tmp_path) == []


def test_a_partial_download_of_another_source_is_discarded(server, payload_archive, tmp_path):
    payload = payload_archive.read_bytes()
    server.behaviours["/data.tar.gz"] = serve(payload)
    output = tmp_path / "archive.tar.gz"
    output.with_name("archive.tar.gz.part").write_bytes(b"x" * 100)
    output.with_name("archive.tar.gz.part.source").write_text("http://elsewhere/other.tar.gz")

    fetch_archive(server.url("/data.tar.gz"), output, md5=digests(payload_archive)[0],
                  sha256=None, **FAST)

    assert output.read_bytes() == payload
    assert [request["range"] for request in server.requests] == [None]
    assert leftovers(tmp_path) == []
    assert not output.with_name("archive.tar.gz.part.source").exists()


def test_drop_once_then_resume_with_range(server, payload_archive, tmp_path):
    payload = payload_archive.read_bytes()
    keep = len(payload) // 3
    server.behaviours["/data.tar.gz"] = first_then(truncate(payload, keep), serve(payload))
    output = tmp_path / "archive.tar.gz"

    fetch_archive(
        server.url("/data.tar.gz"), output, md5=None, sha256=digests(payload_archive)[1], **FAST
    )

    assert output.read_bytes() == payload
    ranges = [request["range"] for request in server.requests]
    assert ranges == [None, f"bytes={keep}-"]
    assert leftovers(tmp_path) == []


def test_reset_once_then_resume(server, payload_archive, tmp_path):
    payload = payload_archive.read_bytes()
    server.behaviours["/data.tar.gz"] = first_then(reset_after(payload, 100), serve(payload))
    output = tmp_path / "archive.tar.gz"

    fetch_archive(
        server.url("/data.tar.gz"), output, md5=digests(payload_archive)[0], sha256=None, **FAST
    )

    assert output.read_bytes() == payload
    assert len(server.requests) == 2


def test_server_ignoring_range_restarts_from_zero(server, payload_archive, tmp_path):
    payload = payload_archive.read_bytes()
    server.behaviours["/data.tar.gz"] = first_then(
        truncate(payload, len(payload) // 2), serve(payload, honour_range=False)
    )
    output = tmp_path / "archive.tar.gz"

    fetch_archive(
        server.url("/data.tar.gz"), output, md5=digests(payload_archive)[0], sha256=None, **FAST
    )

    # The second request asked for the rest, got the whole file with 200, and did not
    # append it to the first half.
    assert server.requests[1]["range"] is not None
    assert output.read_bytes() == payload


def test_server_error_is_retried(server, payload_archive, tmp_path):
    payload = payload_archive.read_bytes()
    server.behaviours["/data.tar.gz"] = first_then(status(503), serve(payload), times=2)
    output = tmp_path / "archive.tar.gz"

    fetch_archive(
        server.url("/data.tar.gz"), output, md5=digests(payload_archive)[0], sha256=None, **FAST
    )

    assert output.read_bytes() == payload
    assert len(server.requests) == 3


def test_not_found_is_not_retried(server, tmp_path):
    output = tmp_path / "archive.tar.gz"

    with pytest.raises(ConnectionError) as error:
        fetch_archive(server.url("/missing.tar.gz"), output, md5="0" * 32, sha256=None, **FAST)

    assert "HTTP 404" in str(error.value)
    assert "download.url" in str(error.value)
    assert len(server.requests) == 1
    assert not output.exists()


@pytest.mark.parametrize(
    "make", [make_evil_archive, make_symlink_archive], ids=["parent", "symlink"]
)
def test_unsafe_download_is_refused(server, tmp_path, make):
    archive = make(tmp_path)
    server.behaviours["/data.tar.gz"] = serve(archive.read_bytes())
    output = tmp_path / "out" / "archive.tar.gz"

    with pytest.raises(UnsafeArchiveError) as error:
        fetch_archive(
            server.url("/data.tar.gz"), output, md5=None, sha256=digests(archive)[1], **FAST
        )

    assert "train/" in str(error.value)  # names the member
    assert not output.exists()
    assert leftovers(output.parent) == []


def test_closed_port_fails_fast_with_advice(tmp_path, monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The socket is closed: nothing listens on the port, so connecting is refused.
    output = tmp_path / "archive.tar.gz"

    started = time.monotonic()
    with pytest.raises(ConnectionError) as error:
        # The default backoff and retries: failing fast must not depend on tuning them.
        fetch_archive(f"http://127.0.0.1:{port}/data.tar.gz", output, md5="0" * 32, sha256=None)
    elapsed = time.monotonic() - started

    assert elapsed < 5
    assert "could not reach" in str(error.value).lower()
    assert "download.source" in str(error.value)
    assert not output.exists()
    assert leftovers(tmp_path) == []


def test_unknown_host_fails_fast_with_advice(tmp_path, monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    lookups = []

    def no_such_host(*args, **kwargs):
        lookups.append(args[0])
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    # Stands in for a DNS failure without asking a real resolver.
    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)

    with pytest.raises(ConnectionError, match=r"download\.source") as error:
        fetch_archive(
            "https://no-such-host.invalid/data.tar.gz",
            tmp_path / "a.tar.gz",
            md5="0" * 32,
            sha256=None,
            backoff_seconds=0.001,
        )

    assert "no-such-host.invalid" in str(error.value)
    assert len(lookups) == 2  # the first attempt and one quick retry, not all five retries


def test_resume_at_the_wrong_byte_restarts(server, payload_archive, tmp_path):
    payload = payload_archive.read_bytes()

    def wrong_range(handler, number):
        _send_body(handler, payload, 10, 206)  # Whatever was asked, sends from byte 10.

    server.behaviours["/data.tar.gz"] = first_then(
        truncate(payload, len(payload) // 2),
        first_then(wrong_range, serve(payload), times=2),
        times=1,
    )
    output = tmp_path / "archive.tar.gz"

    fetch_archive(
        server.url("/data.tar.gz"), output, md5=digests(payload_archive)[0], sha256=None, **FAST
    )

    assert output.read_bytes() == payload
    assert [request["range"] for request in server.requests][2] is None  # restarted from zero


# ---------------------------------------------------------------------------------------
# Local sources
# ---------------------------------------------------------------------------------------


def test_file_url_is_copied_and_verified(payload_archive, tmp_path):
    output = tmp_path / "out" / "archive.tar.gz"
    md5, sha256 = digests(payload_archive)

    fetch_archive(payload_archive.as_uri(), output, md5=md5, sha256=sha256, **FAST)

    assert output.read_bytes() == payload_archive.read_bytes()
    assert leftovers(output.parent) == []


def test_relative_local_path_is_taken_from_the_working_directory(
    payload_archive, tmp_path, monkeypatch
):
    monkeypatch.chdir(payload_archive.parent)
    output = tmp_path / "archive.tar.gz"

    download.run(
        with_defaults("download", {
            "url": "https://example.invalid/never.tar.gz",
            "md5": None,
            "sha256": digests(payload_archive)[1],
            "source": payload_archive.name,
        }),
        output=output,
    )

    assert output.read_bytes() == payload_archive.read_bytes()


def test_run_uses_url_when_source_is_null(payload_archive, tmp_path):
    output = tmp_path / "archive.tar.gz"

    download.run(
        with_defaults("download", {
            "url": payload_archive.as_uri(),
            "md5": digests(payload_archive)[0],
            "sha256": None,
            "source": None,
        }),
        output=output,
    )

    assert output.read_bytes() == payload_archive.read_bytes()


def test_offline_and_checksum_errors_name_every_setting_of_a_local_copy(
        payload_archive, tmp_path, monkeypatch):
    """Issue 19: offline, the error named download.source only, and finding the other settings
    a local copy needs took three tries. Both errors a newcomer meets on the way (the host out
    of reach, then the official MD5 against the copy) now name all four, what
    preprocess.dataset takes, and the README section that sets them in one command."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)

    def offline(*args, **kwargs):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    with pytest.raises(ConnectionError) as unreachable:
        fetch_archive("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                      tmp_path / "a.tar.gz", md5="c58f30108f718f92721af3b95e74349a",
                      sha256=None, backoff_seconds=0.001)
    with pytest.raises(ChecksumError) as checksum:
        fetch_archive(str(payload_archive), tmp_path / "b.tar.gz",
                      md5="c58f30108f718f92721af3b95e74349a", sha256=None)

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "### Using a local copy of the data" in readme and "workflow/params/local-copy.yaml" in readme
    for message in (str(unreachable.value), str(checksum.value)):
        for key in ("download.source", "download.md5", "download.sha256", "preprocess.dataset"):
            assert key in message, (key, message)
        assert "image_folder" in message and "cifar10" in message and "null" in message
        assert '"Using a local copy of the data"' in message
        assert "`lossbench use-params workflow/params/local-copy.yaml` sets all four" in message
    # The checksum error also gives the copy's own digest, ready to paste.
    assert digests(payload_archive)[0] in str(checksum.value)


def test_local_copy_with_wrong_checksum_is_refused(payload_archive, tmp_path):
    output = tmp_path / "archive.tar.gz"

    with pytest.raises(ChecksumError, match=r"download\.md5"):
        fetch_archive(str(payload_archive), output, md5="0" * 32, sha256=None)

    assert not output.exists()
    assert leftovers(tmp_path) == []


def test_missing_local_source_names_the_key(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"download\.source"):
        fetch_archive(
            str(tmp_path / "nowhere.tar.gz"), tmp_path / "archive.tar.gz", md5=None, sha256=None
        )


def test_unverified_archive_is_logged(payload_archive, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="lossbench.download"):
        fetch_archive(str(payload_archive), tmp_path / "archive.tar.gz", md5=None, sha256=None)

    assert "UNVERIFIED" in caplog.text


def test_not_a_tar_is_refused(tmp_path):
    source = tmp_path / "notes.txt"
    source.write_text("this is not an archive\n" * 100)
    output = tmp_path / "archive.tar.gz"

    with pytest.raises(ArchiveError, match="not a readable tar archive"):
        fetch_archive(str(source), output, md5=None, sha256=None)

    assert not output.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("prefix", ["images", ""], ids=["with-top-folder", "bare"])
def test_directory_is_packed_and_preprocessable(tmp_path, prefix, caplog):
    expected = write_image_folder(tmp_path / "tree", prefix=prefix)
    output = tmp_path / "archive.tar"

    with caplog.at_level(logging.INFO, logger="lossbench.download"):
        fetch_archive(str(tmp_path / "tree"), output, md5="0" * 32, sha256=None)

    assert "do not apply" in caplog.text  # the given checksum is reported as not checked
    with tarfile.open(output) as tar:
        assert all(member.isfile() or member.isdir() for member in tar.getmembers())
    prepared = tmp_path / "prepared"
    prepare_with_defaults(
        output, dataset="image_folder", output_dir=prepared, counts_path=tmp_path / "counts.json"
    )
    data = load_prepared(prepared)
    # Image-folder training images are stored in one fixed seeded order (preprocess.subset_seed 0).
    order = preprocess.image_folder_order(len(expected.train_labels), 0)
    assert (data.train_images == expected.train_images[order]).all()
    assert (data.test_labels == expected.test_labels).all()


def test_directory_packing_is_reproducible(tmp_path):
    write_image_folder(tmp_path / "tree")
    first, second = tmp_path / "first.tar", tmp_path / "second.tar"

    fetch_archive(str(tmp_path / "tree"), first, md5=None, sha256=None)
    time.sleep(0.01)
    (tmp_path / "tree").touch()
    fetch_archive(str(tmp_path / "tree"), second, md5=None, sha256=None)

    assert first.read_bytes() == second.read_bytes()


def test_directory_without_image_folder_layout_is_refused(tmp_path):
    (tmp_path / "tree" / "pictures").mkdir(parents=True)
    output = tmp_path / "archive.tar"

    with pytest.raises(ValueError, match="train/<class>"):
        fetch_archive(str(tmp_path / "tree"), output, md5=None, sha256=None)

    assert not output.exists()
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------
# Archive safety
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", UNSAFE_KINDS)
def test_check_members_refuses_unsafe_members(tmp_path, kind):
    archive = make_unsafe_archive(tmp_path, kind)

    with pytest.raises(UnsafeArchiveError) as error:
        check_members(archive)

    assert "member" in str(error.value)


def test_check_members_accepts_a_plain_archive(payload_archive):
    check_members(payload_archive)


def test_a_plain_archive_is_read_in_place(payload_archive, tmp_path):
    contents = read_archive(payload_archive)

    train_images = [name for name in regular_files(contents)
                    if name.startswith("images/train/") and name.endswith(".png")]
    assert len(train_images) == 12
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


# One attack each: a path leaving the archive, a '..' that stays inside (Python's data filter
# lets it pass; lossbench reads members by name and refuses it), an absolute path, a symbolic
# and a hard link, a FIFO and a device file, each refused by name before anything reaches
# `output`.
UNSAFE_MEMBER_NAMES = {
    "parent": "train/../../evil",
    "inner_parent": "train/../train/cat/evil",
    "absolute": "/tmp/evil",
    "symlink": "train/cat/symlink",
    "hardlink": "train/cat/hardlink",
    "fifo": "train/cat/fifo",
    "device": "train/cat/device",
}


@pytest.mark.parametrize("kind", UNSAFE_KINDS)
def test_an_unsafe_local_archive_is_refused(tmp_path, kind):
    archive = make_unsafe_archive(tmp_path, kind)
    output = tmp_path / "deep" / "archive.tar.gz"

    with pytest.raises(UnsafeArchiveError, match=re.escape(repr(UNSAFE_MEMBER_NAMES[kind]))):
        fetch_archive(str(archive), output, md5=None, sha256=None)

    assert not output.exists()
    assert leftovers(output.parent) == []
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "deep" / "evil").exists()


def test_an_unsafe_archive_leaves_the_previous_output(tmp_path):
    output = tmp_path / "archive.tar.gz"
    output.write_text("precious")

    with pytest.raises(UnsafeArchiveError, match="evil"):
        fetch_archive(str(make_evil_archive(tmp_path)), output, md5=None, sha256=None)

    assert output.read_text() == "precious"


def test_a_relative_source_missing_in_a_dvc_temp_copy_says_why_and_how(tmp_path, monkeypatch):
    """Issue 32: `dvc exp run --temp` runs in a copy under .dvc/tmp/exps/, where a path relative
    to the checkout does not reach; the error says so and how to give it absolutely."""
    from lossbench.download import _local_path

    copy = tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    with pytest.raises(FileNotFoundError, match=r"A relative path is taken from the project root.*"
                                                r"\(`dvc exp run --temp` or --queue.*"
                                                r"-S download\.source=\$PWD/\.\./shared/x\.tar\.gz"):
        _local_path("../shared/x.tar.gz")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as outside:
        _local_path("../shared/x.tar.gz")
    assert "--temp" not in str(outside.value)

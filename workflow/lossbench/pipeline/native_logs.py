"""Keep TensorFlow's native start-up noise out of a command's output.

In:  nothing; `filter_stderr()` is called once, at the start of a `lossbench` command run as a
     program (`lossbench.cli.main`), before anything imports TensorFlow, unless --verbose or
     LOSSBENCH_NATIVE_LOGS=1 (`KEEP_VARIABLE`) asks for every line.
Out: from then on the process's stderr (file descriptor 2, which TensorFlow's C++ code and
     Python both write to) passes through a filter that drops the lines of `NOISE` and passes
     every other byte on unchanged and at once; `stop()` ends it, every line delivered.

Why a filter and not TF_CPP_MIN_LOG_LEVEL: TensorFlow 2.21 logs its CUDA probe through absl
before its own log level applies, so even TF_CPP_MIN_LOG_LEVEL=3 leaves "WARNING: All log
messages before absl::InitializeLog() is called are written to STDERR" and "cudart_stub.cc:31]
Could not find cuda drivers on your machine" in every job's log, twice, on a machine without a
GPU (measured; tensorflow/tensorflow#100442). Nor can TF_CPP_MIN_LOG_LEVEL be the switch that
keeps them: JAX sets it (to 1) in os.environ whenever it is imported, so every command a Python
process that imported JAX starts (pytest, a study driver) would have it. What is dropped: those
two, TensorFlow's other native info and warning lines (the `I...`/`W...` absl lines and the old
`... I tensorflow/...` form: the CPU-instructions notice, oneDNN's, XLA's), and two errors that
only say that there is no usable CUDA driver or that a CUDA plugin registered twice. Native
errors of any other kind, Python's own output and crash reports pass.

The filter runs in a forked child process, not a thread, so that what a crashing process
wrote last (a fatal error, a segfault's report) still arrives: the child reads until every
writer is gone. It ignores SIGINT and SIGTERM, which a terminal or a scheduler sends to the
whole process group, so that it forwards the command's last line ("interrupted ...") first.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time

# One complete line each (without its newline).
NOISE = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    rb"|[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] "
    rb"|E\d{4} [\d:.]+ +\d+ \S+:\d+\] (?:failed call to cuInit"
    rb"|Unable to register cu\w+ factory)"
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IW] (?:tensorflow|external|xla)/"
    rb"|To enable the following instructions: .*, in other operations, rebuild TensorFlow"
)
# A line that has not ended yet is held back only while it may still become one of NOISE's:
# while it could be the start of one of these, or starts as an absl (`I0000 ...`) or
# timestamped (`2026-...`) line does. Native log lines are written whole, so they are never
# held for long; any other output (a progress bar that never ends its line) passes at once.
NOISE_STARTS = (b"WARNING: All log messages before absl", b"To enable the following instructions")
LOG_HEADER = re.compile(rb"[IWE](?:\d|$)|\d{1,4}$|\d{4}-")

# Set to 1, every native line is kept (as with --verbose).
KEEP_VARIABLE = "LOSSBENCH_NATIVE_LOGS"

_child: int | None = None
_saved_stderr: int | None = None


def is_noise(line: bytes) -> bool:
    """Whether `line` (without its newline) is one that the filter drops."""
    return NOISE.match(line) is not None


def _may_become_noise(start: bytes) -> bool:
    return (any(prefix.startswith(start) or start.startswith(prefix) for prefix in NOISE_STARTS)
            or LOG_HEADER.match(start) is not None)


def filter_lines(chunks, write) -> None:
    """Pass the bytes of `chunks` (an iterable of bytes) to `write`, less the NOISE lines.

    A line is passed as soon as it cannot be noise any more, so that a progress bar redrawn
    with carriage returns, which never ends a line, still shows at once.
    """
    pending, passing = b"", False
    for chunk in chunks:
        pending += chunk
        while pending:
            if passing:  # the rest of a line already found not to be noise
                end = pending.find(b"\n")
                if end < 0:
                    write(pending)
                    pending = b""
                    break
                write(pending[:end + 1])
                pending, passing = pending[end + 1:], False
                continue
            end = pending.find(b"\n")
            if end < 0:
                if not _may_become_noise(pending):
                    passing = True
                    continue
                break  # wait for the rest of the line
            line, pending = pending[:end], pending[end + 1:]
            if not is_noise(line.rstrip(b"\r")):
                write(line + b"\n")
    if pending:
        write(pending)


def _run_child(read_end: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def chunks():
        while chunk := os.read(read_end, 65536):
            yield chunk

    def write(data: bytes) -> None:
        while data:
            data = data[os.write(2, data):]

    try:
        filter_lines(chunks(), write)
    except OSError:
        pass  # the reader of stderr went away: nothing left to deliver to
    os._exit(0)


def filter_stderr() -> bool:
    """Route file descriptor 2 through the noise filter; False where it cannot (no fork)."""
    global _child, _saved_stderr
    if _child is not None or not hasattr(os, "fork"):
        return False
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child process
        os.close(write_end)
        _run_child(read_end)
    os.close(read_end)
    _saved_stderr = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)
    _child = child
    return True


def stop(timeout_seconds: float = 5.0) -> None:
    """Give file descriptor 2 back and wait (at most `timeout_seconds`) until the filter has
    delivered every line; a no-op when no filter runs."""
    global _child, _saved_stderr
    if _child is None:
        return
    sys.stderr.flush()
    os.dup2(_saved_stderr, 2)  # closes this process's last copy of the pipe's write end
    os.close(_saved_stderr)
    deadline = time.monotonic() + timeout_seconds
    # A process this one started may still hold the pipe; the filter then ends with it.
    while os.waitpid(_child, os.WNOHANG) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    _child = _saved_stderr = None

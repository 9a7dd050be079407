"""SIGTERM ends a `lossbench` command as Ctrl-C does: one line, an exit status, resumable.

In:  the block a command runs in (`lossbench.cli.main` wraps every stage in `terminate_as_interrupt`).
Out: inside it, SIGTERM raises `Terminated`, a KeyboardInterrupt, where Ctrl-C raises
     KeyboardInterrupt; on leaving it the previous handler is back.

Schedulers and tools stop jobs with SIGTERM (SLURM at its time limit, `kill`, Snakemake and
DVC when they are stopped). Its default action ends the process at once, with no line from
lossbench. As an exception it takes Ctrl-C's way: the code that cleans up after Ctrl-C (a
temporary file removed, an interrupted download kept to resume, `atomic.signals_deferred`
finishing a rename first) does the same for it, and the command ends with exit status 143
(128 + SIGTERM, what a shell reports for a process that SIGTERM ended). A training resumes
from its last finished epoch either way.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

EXIT_STATUS = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (raised where Ctrl-C raises KeyboardInterrupt)."""


def _raise_terminated(number, frame) -> None:
    raise Terminated()


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated`; afterwards the previous handler is back.

    Python runs signal handlers in the main thread only: elsewhere the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

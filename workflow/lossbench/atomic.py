"""Write files so that no reader ever sees half of one.

In: a path and the text (or JSON value) to put there. Out: the file, written to a temporary
name in the same directory and renamed into place, so a crash or Ctrl-C leaves either the
previous file or the new one, never a mixture. Every stage writes its small outputs this way.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def signals_deferred():
    """Hold Ctrl-C (SIGINT) and SIGTERM until the block ends, then let them act.

    A write takes milliseconds; an interrupt landing between creating the temporary file and
    the `try` that removes it would strand that file. Inside the block a signal is only
    noted; when the block ends the previous handlers are back and each noted signal is
    handled by them (KeyboardInterrupt for Ctrl-C). Python runs signal handlers in the main
    thread only, so in other threads the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.signal(number, lambda number, frame: received.append(number))
                for number in held}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in received:
            handler = previous[number]
            if callable(handler):
                handler(number, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(number)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with signals_deferred():
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w") as stream:
                stream.write(text)
            os.chmod(temporary, 0o644)  # mkstemp makes the file private to its owner.
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def write_json(path: str | os.PathLike, value: Any) -> None:
    """Write `value` as strict JSON (NaN and infinity refused: callers write null instead)."""
    write_text(path, json.dumps(value, indent=2, allow_nan=False) + "\n")

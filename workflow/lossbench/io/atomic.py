"""Write files and directories so that no reader ever sees half of one.

In: a destination path, and either the text (or JSON value) to put there or a block that
writes to the temporary path this module hands it. Out: the file or directory, written under
a temporary name in the same directory and renamed into place only once complete, so a crash
or Ctrl-C leaves either the previous version or the new one, never a mixture, and no
temporary name behind. A write the system refuses without naming a file ("File too large"
under `ulimit -f`) is raised again naming the output. Every stage writes its outputs through this module:

- `write_text` / `write_json`: small files written whole;
- `staged_file`: a file a library writes itself (a Keras model, an .npz checkpoint);
- `staged_directory`: a directory of outputs (prepared arrays, figures), swapped in whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator


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


def _named(error: BaseException, path: Path) -> BaseException:
    """``error``, or for an OSError that names no file (a write refused with "File too large"
    under `ulimit -f`, or "No space left on device"), the same error naming ``path``."""
    if type(error) is OSError and error.filename is None and error.errno is not None:
        named = OSError(error.errno, error.strerror, str(path))
        named.__cause__ = error
        return named
    return error


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
        except BaseException as error:
            Path(temporary).unlink(missing_ok=True)
            named = _named(error, path)
            if named is not error:
                raise named from error
            raise


def write_json(path: str | os.PathLike, value: Any) -> None:
    """Write `value` as strict JSON (NaN and infinity refused: callers write null instead)."""
    write_text(path, json.dumps(value, indent=2, allow_nan=False) + "\n")


@contextlib.contextmanager
def staged_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix); when the block ends without an
    error, rename it to `path`. On any error, Ctrl-C included, the temporary file goes.

    The suffix is kept because some writers choose the format by it (Keras wants ".keras")
    or add one when it is missing (numpy's savez adds ".npz").
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = None
    try:
        with signals_deferred():
            handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                            suffix=f".tmp{path.suffix}")
            os.close(handle)
            temporary = Path(name)
        yield temporary
        with signals_deferred():
            os.chmod(temporary, 0o644)  # mkstemp makes the file private to its owner.
            os.replace(temporary, path)
    except BaseException as error:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        named = _named(error, path)
        if named is not error:
            raise named from error
        raise


@contextlib.contextmanager
def staged_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory beside `path`; when the block ends without an
    error, put it in place of `path` (the previous directory, if any, is removed only after
    the new one is in place). On any error the temporary directory goes and `path` is left
    as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A stage killed with SIGKILL leaves its staging (or retired) directory behind; the next
    # writer of the same output removes it (orchestrators run one writer per output).
    for leftover in [*path.parent.glob(f".{path.name}.*.tmp"), *path.parent.glob(f".{path.name}.*.old")]:
        shutil.rmtree(leftover, ignore_errors=True)
    staging = None
    try:
        with signals_deferred():
            staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        yield staging
        # mkdtemp makes the directory private to its owner; outputs are meant to be shared.
        os.chmod(staging, 0o755)
        _swap_in(staging, path)
    except BaseException as error:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        named = _named(error, path)
        if named is not error:
            raise named from error
        raise


def _swap_in(staging: Path, path: Path) -> None:
    """Rename `staging` to `path`, moving a previous `path` aside first and deleting it after.

    A directory cannot be replaced by rename while it holds files, so the previous one is
    renamed to a retired name first; both renames happen with signals held, so an interrupt
    cannot leave `path` missing between them.
    """
    retired = None
    with signals_deferred():
        if path.exists() or path.is_symlink():
            retired = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, retired / path.name)
        os.replace(staging, path)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)

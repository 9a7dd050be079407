"""Write files so that no reader ever sees half of one.

In: a path and the text (or JSON value) to put there. Out: the file, written to a temporary
name in the same directory and renamed into place, so a crash or Ctrl-C leaves either the
previous file or the new one, never a mixture. Every stage writes its small outputs this way.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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

"""The one-line messages of `lossbench` for problems of the machine rather than of lossbench.

In:  an OSError raised by a stage.
Out: `describe_os_error`: the system's reason, the file and, for the usual causes (a full
     disk, a missing permission, a read-only file system), what to do. For a missing
     permission it names the path that denies it, which is often not the file the system
     names: a folder above it that may not be entered (issue 31: a checkpoint folder made
     unreadable was reported as its checkpoint file, with a hint to check writing).
"""

from __future__ import annotations

import os
from pathlib import Path


def describe_os_error(error: OSError) -> str:
    """One sentence: the system's reason, the file and, for the usual causes, the remedy."""
    import errno

    where = f" ({error.filename})" if error.filename else ""
    reason = error.strerror or str(error)
    denied = _permission_hint(error.filename)
    hints = {
        errno.ENOSPC: " Free some space on that disk and run again.",
        errno.EDQUOT: " Free some space within your quota and run again.",
        errno.EACCES: denied,
        errno.EPERM: denied,
        errno.EROFS: " That file system is read-only: write somewhere else.",
        errno.EFBIG: " The file size limit of this shell (`ulimit -f`) is below what is "
                     "written there: raise it (`ulimit -f unlimited`) and run again.",
    }
    return f"{reason}{where}.{hints.get(error.errno, '')} (--verbose shows the traceback.)"


def _permission_hint(filename) -> str:
    """What to check for a refused permission on `filename`: the first folder on its way that
    this user may not enter, or else the file (or its folder) that may not be read or written,
    with the `ls -ld` that shows its owner and mode."""
    if not filename:
        return " Check that you may read and write there (ownership and permissions)."
    path = Path(os.path.abspath(filename))
    for folder in reversed(path.parents):
        if folder.is_dir() and not os.access(folder, os.X_OK):
            return (f" The folder {folder} may not be entered by this user: check its owner "
                    f"and permissions (`ls -ld '{folder}'`), or use a path outside it.")
    if os.path.lexists(path) and not os.access(path, os.R_OK | os.W_OK):
        what = "folder" if path.is_dir() else "file"
        return (f" This user may not read and write that {what}: check its owner and "
                f"permissions (`ls -ld '{path}'`).")
    if path.parent.is_dir() and not os.access(path.parent, os.W_OK):
        return (f" The folder {path.parent} may not be written by this user: check its owner "
                f"and permissions (`ls -ld '{path.parent}'`), or use a path outside it.")
    return " Check that you may read and write there (ownership and permissions)."

"""The one-line messages of `lossbench` for problems of the machine rather than of lossbench.

In:  an OSError raised by a stage.
Out: `describe_os_error`: the system's reason, the file and, for the usual causes (a full
     disk, a missing permission, a read-only file system), what to do.
"""

from __future__ import annotations


def describe_os_error(error: OSError) -> str:
    """One sentence: the system's reason, the file and, for the usual causes, the remedy."""
    import errno

    where = f" ({error.filename})" if error.filename else ""
    reason = error.strerror or str(error)
    hints = {
        errno.ENOSPC: " Free some space on that disk and run again.",
        errno.EDQUOT: " Free some space within your quota and run again.",
        errno.EACCES: " Check that you may write there (ownership and permissions).",
        errno.EPERM: " Check that you may write there (ownership and permissions).",
        errno.EROFS: " That file system is read-only: write somewhere else.",
        errno.EFBIG: " The file size limit of this shell (`ulimit -f`) is below what is "
                     "written there: raise it (`ulimit -f unlimited`) and run again.",
    }
    return f"{reason}{where}.{hints.get(error.errno, '')} (--verbose shows the traceback.)"

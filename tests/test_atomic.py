"""lossbench.io.atomic: files and directories appear whole or not at all."""

import errno
import os

import pytest

from lossbench.io import atomic


def leftovers(directory):
    """Names in `directory` that a write left behind (temporary or retired)."""
    return sorted(name for name in os.listdir(directory) if name.startswith("."))


def test_staged_file_renames_into_place_with_the_suffix_kept(tmp_path):
    target = tmp_path / "model.keras"
    with atomic.staged_file(target) as temporary:
        assert temporary.parent == tmp_path and temporary.suffix == ".keras"
        temporary.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new"
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    assert leftovers(tmp_path) == []


def test_staged_file_leaves_the_previous_file_on_error(tmp_path):
    target = tmp_path / "weights.npz"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic.staged_file(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_staged_directory_replaces_the_previous_directory_whole(tmp_path):
    target = tmp_path / "figures"
    target.mkdir()
    (target / "stale.png").write_text("old")
    with atomic.staged_directory(target) as staging:
        (staging / "fresh.png").write_text("new")
        assert (target / "stale.png").exists()
    assert sorted(os.listdir(target)) == ["fresh.png"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o755)
    assert leftovers(tmp_path) == []


def test_staged_directory_keeps_the_previous_directory_on_error(tmp_path):
    target = tmp_path / "prepared"
    target.mkdir()
    (target / "train.npz").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic.staged_directory(target) as staging:
            (staging / "train.npz").write_text("half")
            raise KeyboardInterrupt
    assert (target / "train.npz").read_text() == "old"
    assert leftovers(tmp_path) == []


def test_staged_directory_creates_a_missing_parent(tmp_path):
    target = tmp_path / "new" / "figures"
    with atomic.staged_directory(target) as staging:
        (staging / "a.png").write_text("a")
    assert (target / "a.png").read_text() == "a"


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_a_refused_write_that_names_no_file_is_named(tmp_path, kind):
    """Issue 20, D10: under `ulimit -f` a write fails with "File too large" and no file name;
    the one line lossbench prints must say which output it was."""
    target = tmp_path / ("model.keras" if kind == "file" else "prepared")
    stage = atomic.staged_file if kind == "file" else atomic.staged_directory
    with pytest.raises(OSError) as error:
        with stage(target):
            raise OSError(errno.EFBIG, "File too large")
    assert error.value.errno == errno.EFBIG and error.value.filename == str(target)
    assert leftovers(tmp_path) == []


def test_a_killed_writers_staging_directory_is_removed_by_the_next_writer(tmp_path):
    """Issue 31: a figures stage killed with SIGKILL left reports/.figures.*.tmp for good."""
    from lossbench.io.atomic import staged_directory

    leftover = tmp_path / ".figures.abc123.tmp"
    leftover.mkdir()
    (leftover / "half.png").write_bytes(b"half")
    retired = tmp_path / ".figures.def456.old"
    retired.mkdir()
    other = tmp_path / ".summary.json.x.tmp"  # another output's: not this writer's to remove
    other.write_text("{}")
    with staged_directory(tmp_path / "figures") as staging:
        (staging / "a.png").write_bytes(b"png")
    assert sorted(path.name for path in tmp_path.iterdir()) == [".summary.json.x.tmp", "figures"]

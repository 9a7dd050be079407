"""The `lossbench` command's error handling: one line and an exit status, never a traceback.

Problems of the input (ValueError, a missing file) exit 2, of the machine (OSError: a full
disk, a missing permission) 1, an interrupt (Ctrl-C) 130; `--verbose` shows the traceback.
"""

import errno
from pathlib import Path

import pytest

from lossbench import cli, download

PROJECT = Path(__file__).resolve().parent.parent


def run_download(monkeypatch, capsys, error: BaseException | None, *options: str):
    def fail(*args, **kwargs):
        if error is not None:
            raise error

    monkeypatch.setattr(download, "run", fail)
    status = cli.main([*options, "--params", str(PROJECT / "params.yaml"), "download",
                       "--output", "data/raw/archive"])
    return status, capsys.readouterr().err


@pytest.mark.parametrize(
    ("code", "reason", "hint"),
    [
        (errno.ENOSPC, "No space left on device", "Free some space on that disk"),
        (errno.EACCES, "Permission denied", "Check that you may write there"),
    ],
)
def test_an_os_error_is_one_line_and_exit_1(monkeypatch, capsys, code, reason, hint):
    status, err = run_download(monkeypatch, capsys, OSError(code, reason, "data/raw/archive"))

    assert status == 1
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"lossbench download: error: {reason} (data/raw/archive). {hint}")


def test_an_interrupt_is_one_line_and_exit_130(monkeypatch, capsys):
    status, err = run_download(monkeypatch, capsys, KeyboardInterrupt())

    assert status == 130
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("lossbench download: interrupted. Run the same command again")


def test_sigterm_is_one_line_and_exit_143():
    """Issue 20, D5: SIGTERM (SLURM's time limit, `kill`) ended a training with exit 143 and no
    line from lossbench. It now ends a stage as Ctrl-C does, with its own line."""
    import signal
    import subprocess
    import sys

    script = (
        "import sys, time\n"
        "from lossbench import cli, download\n"
        "def wait(*args, **kwargs):\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
        "download.run = wait\n"
        f"sys.exit(cli.main(['--params', {str(PROJECT / 'params.yaml')!r}, 'download', "
        "'--output', 'data/raw/archive']))\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)

    assert process.returncode == 143, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("lossbench download: terminated (SIGTERM). Run the same command again")


def test_the_sigterm_handler_is_lossbench_s_only_while_a_command_runs(monkeypatch, capsys):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    seen = []
    monkeypatch.setattr(download, "run",
                        lambda *args, **kwargs: seen.append(signal.getsignal(signal.SIGTERM)))
    status = cli.main(["--params", str(PROJECT / "params.yaml"), "download",
                       "--output", "data/raw/archive"])
    assert status == 0 and seen and seen[0] is not before
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   KeyboardInterrupt()])
def test_verbose_keeps_the_traceback(monkeypatch, capsys, error):
    with pytest.raises(type(error)):
        run_download(monkeypatch, capsys, error, "--verbose")


def test_a_job_refuses_params_edited_since_snakemake_built_its_dag(monkeypatch, capsys):
    """The Snakefile exports the digest of the values it built its DAG from; jobs compare."""
    from lossbench.params import DAG_DIGEST_VARIABLE, load_params, params_digest

    monkeypatch.setenv(DAG_DIGEST_VARIABLE, params_digest(load_params(PROJECT / "params.yaml")))
    assert run_download(monkeypatch, capsys, None)[0] == 0

    monkeypatch.setenv(DAG_DIGEST_VARIABLE, "0" * 64)
    status, err = run_download(monkeypatch, capsys, None)
    assert status == 2
    assert "params.yaml has changed since Snakemake built its DAG from it" in err

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
        (errno.EACCES, "Permission denied", "Check that you may read and write there"),
    ],
)
def test_an_os_error_is_one_line_and_exit_1(monkeypatch, capsys, code, reason, hint):
    status, err = run_download(monkeypatch, capsys, OSError(code, reason, "data/raw/archive"))

    assert status == 1
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"lossbench download: error: {reason} (data/raw/archive). {hint}")


@pytest.mark.parametrize("denied", ["folder", "file"])
def test_a_refused_permission_names_the_path_that_refuses_it(monkeypatch, capsys, tmp_path, denied):
    """Issue 31: a checkpoint folder that may not be entered (chmod 000) was reported as
    "Permission denied (<folder>/checkpoint.npz). Check that you may write there", naming the
    file inside it. The message now names the folder (or the file, where the file is the one
    refused). os.access is replaced because the tests run as root, whom no mode refuses; by
    hand, as the user nobody, the real folder gave the same line."""

    from lossbench.pipeline import messages

    folder = tmp_path / "run" / "checkpoint"
    folder.mkdir(parents=True)
    checkpoint = folder / "checkpoint.npz"
    checkpoint.write_bytes(b"")
    refused = folder if denied == "folder" else checkpoint
    monkeypatch.setattr(messages.os, "access",
                        lambda path, mode, **kwargs: Path(path) != refused)

    status, err = run_download(monkeypatch, capsys,
                               PermissionError(errno.EACCES, "Permission denied", str(checkpoint)))

    assert status == 1 and len(err.strip().splitlines()) == 1
    assert f"Permission denied ({checkpoint})." in err
    assert f"`ls -ld '{refused}'`" in err
    if denied == "folder":
        assert f"The folder {folder} may not be entered by this user" in err
    else:
        assert "may not read and write that file" in err


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


# What TensorFlow 2.21 wrote to a job's log on a 2-core CPU machine without a GPU before any
# lossbench line (issue 19), and lines that must pass: Python's logging, a native error of
# another kind, a traceback, Keras' epoch line.
TENSORFLOW_NOISE = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"I0000 00:00:1795955974.120573   19402 cudart_stub.cc:31] Could not find cuda drivers on "
    b"your machine, GPU will not be used.",
    b"I0000 00:00:1795955974.237487   19402 cpu_feature_guard.cc:227] This TensorFlow binary is "
    b"optimized to use available CPU instructions in performance-critical operations.",
    b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
    b"with the appropriate compiler flags.",
    b"E0000 00:00:1795955979.124279   19402 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
    b"CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    b"2023-08-25 11:11:47.521702: I tensorflow/tsl/cuda/cudart_stub.cc:28] Could not find cuda "
    b"drivers on your machine, GPU will not be used.",
]
KEPT = [
    b"2026-11-29 12:39:39,560 lossbench.train.training INFO: Training hinge, seed 0, on CPU",
    b"E0000 00:00:1795955979.124279   19402 bfc_allocator.cc:485] Allocator ran out of memory",
    b"Traceback (most recent call last):",
    b"32/32 - 4s - 128ms/step - accuracy: 0.2266 - loss: 0.9376",
    b"WARNING: a warning of Python's own",
]


def test_tensorflow_start_up_noise_is_left_out_and_everything_else_passes():
    from lossbench.pipeline import native_logs

    text = b"".join(line + b"\n" for pair in zip(TENSORFLOW_NOISE, KEPT) for line in pair)
    for size in (1, 7, len(text)):  # written byte by byte, in pieces, at once
        written = []
        native_logs.filter_lines((text[i:i + size] for i in range(0, len(text), size)),
                                 written.append)
        assert b"".join(written) == b"".join(line + b"\n" for line in KEPT[:len(TENSORFLOW_NOISE)])
    # A progress bar that redraws one line with carriage returns passes before its line ends.
    written, delivered_before = [], []

    def redraws():
        for chunk in (b"  10%|#  |\r", b"  20%|## |\r", b" 100%|###|\n"):
            delivered_before.append(b"".join(written))
            yield chunk

    native_logs.filter_lines(redraws(), written.append)
    assert delivered_before == [b"", b"  10%|#  |\r", b"  10%|#  |\r  20%|## |\r"]
    assert b"".join(written) == b"  10%|#  |\r  20%|## |\r 100%|###|\n"


def test_native_logs_are_kept_with_verbose_or_lossbench_native_logs(monkeypatch):
    from lossbench.pipeline import native_logs

    calls = []
    monkeypatch.setattr(native_logs, "filter_stderr", lambda: calls.append(True))
    monkeypatch.setattr(download, "run", lambda *args, **kwargs: None)
    command = ["lossbench", "--params", str(PROJECT / "params.yaml"), "download", "--output", "x"]
    for argv, environment, filtered in ((command, {}, True),
                                        (command[:1] + ["--verbose"] + command[1:], {}, False),
                                        (command, {"LOSSBENCH_NATIVE_LOGS": "1"}, False),
                                        # JAX sets it whenever it is imported: not a switch.
                                        (command, {"TF_CPP_MIN_LOG_LEVEL": "1"}, True)):
        calls.clear()
        monkeypatch.setattr("sys.argv", argv)
        monkeypatch.delenv("LOSSBENCH_NATIVE_LOGS", raising=False)
        monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        assert cli.main() == 0
        assert calls == ([True] if filtered else []), (argv, environment)


def test_sigterm_to_the_process_group_passes_the_filter_as_one_line():
    """Snakemake's jobs, a terminal's Ctrl-C and a scheduler signal the whole process group,
    the noise filter's process included: it outlives the command and forwards its last line."""
    import os
    import signal
    import subprocess
    import sys

    noise = TENSORFLOW_NOISE[1] + b"\n"
    script = (
        "import os, sys, time\n"
        "from lossbench import cli, download\n"
        "def wait(*args, **kwargs):\n"
        f"    os.write(2, {noise!r})\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
        "download.run = wait\n"
        f"sys.argv = ['lossbench', '--params', {str(PROJECT / 'params.yaml')!r}, 'download', "
        "'--output', 'data/raw/archive']\n"
        "sys.exit(cli.main())\n"
    )
    environment = {key: value for key, value in os.environ.items() if key != "LOSSBENCH_NATIVE_LOGS"}
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=environment,
                               start_new_session=True)
    assert process.stdout.readline().strip() == "ready"
    os.killpg(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=30)

    assert process.returncode == 143, err
    assert err.splitlines() == [
        "lossbench download: terminated (SIGTERM). Run the same command again to finish (a "
        "training resumes from its last finished epoch)."]


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
    from lossbench.pipeline.params import DAG_DIGEST_VARIABLE, load_params, params_digest

    monkeypatch.setenv(DAG_DIGEST_VARIABLE, params_digest(load_params(PROJECT / "params.yaml")))
    assert run_download(monkeypatch, capsys, None)[0] == 0

    monkeypatch.setenv(DAG_DIGEST_VARIABLE, "0" * 64)
    status, err = run_download(monkeypatch, capsys, None)
    assert status == 2
    assert "params.yaml has changed since Snakemake built its DAG from it" in err

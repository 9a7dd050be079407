"""Where training runs: train.device, the `auto` settings, the progress log and the warning."""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lossbench import callbacks, device

from test_train import LOSSBENCH, PROJECT, train_command, write_params, write_prepared


def test_bf16_units_are_read_from_the_cpu_flags():
    assert device.cpu_bf16_units({"avx512_bf16", "amx_bf16", "sse2"}) == ["amx_bf16", "avx512_bf16"]
    assert device.cpu_bf16_units({"avx2"}) == []


def test_steps_per_execution_and_xla_auto():
    assert device.resolve_steps_per_execution("auto", "cpu", 1563) == 1
    # On a GPU: the largest divisor of the epoch's steps up to 64, so epochs never overlap.
    assert device.resolve_steps_per_execution("auto", "gpu", 1563) == 3
    assert device.resolve_steps_per_execution("auto", "gpu", 1600) == 64
    assert device.resolve_steps_per_execution(50, "gpu", 1600) == 50
    with pytest.raises(ValueError, match="does not divide the 1563 steps of an epoch.*1, 3, 521, 1563"):
        device.resolve_steps_per_execution(50, "gpu", 1563)
    assert device.resolve_jit_compile("auto", "cpu") is False
    assert device.resolve_jit_compile("auto", "gpu") is True
    assert device.resolve_jit_compile(False, "gpu") is False


def test_device_gpu_is_refused_in_seconds_before_the_data_is_read(tmp_path):
    params = write_params(tmp_path / "params.yaml", device="gpu")
    # The data directory does not exist: the device check must come first.
    command = train_command(params, tmp_path / "no-data-here", tmp_path / "out")
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    print(f"train.device: gpu refused after {elapsed:.1f} s: {result.stderr.strip()[-400:]}")
    assert result.returncode == 2
    assert "train.device is gpu, but the tensorflow backend sees no GPU" in result.stderr
    assert 'pip install -e ".[gpu]"' in result.stderr
    assert "no-data-here" not in result.stderr
    assert elapsed < 60


def test_one_fit_logs_each_epoch_on_one_line(tmp_path):
    data = write_prepared(tmp_path / "data", train_count=128, test_count=32)
    params = write_params(tmp_path / "params.yaml", epochs=2)
    log = tmp_path / "train.log"
    with log.open("w") as handle:  # a file, as under Snakemake's `| tee {log}`: not a terminal
        subprocess.run(train_command(params, data, tmp_path / "out"), stdout=handle,
                       stderr=subprocess.STDOUT, check=True, timeout=300)
    text = log.read_text()
    assert "Epoch 1/2" in text and "Epoch 2/2" in text
    assert "\r" not in text and "━" not in text
    assert "1 step(s) per execution, XLA off" in text


def test_projected_time_warning_on_a_long_cpu_run(monkeypatch, caplog):
    clock = iter([100.0, 100.0 + 20 * 0.5])  # 20 steps of 0.5 s between steps 5 and 25
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: next(clock))
    warning = callbacks.ProjectedTimeWarning(steps_per_epoch=1563, epochs_left=100, validation_steps=313)
    with caplog.at_level("WARNING"):
        for step in range(30):
            warning.on_train_batch_end(step)
    # 0.5 s x 100 x (1563 + 313 / 3) steps = 83,367 s = 23.2 hours.
    assert warning.projected_seconds == pytest.approx(0.5 * 100 * (1563 + 313 / 3))
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1
    assert "projected to take 23.2 hours" in messages[0] and 'pip install -e ".[gpu]"' in messages[0]


def test_a_short_run_gets_no_warning(monkeypatch, caplog):
    clock = iter([100.0, 100.2])
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: next(clock))
    warning = callbacks.ProjectedTimeWarning(steps_per_epoch=40, epochs_left=2, validation_steps=4)
    with caplog.at_level("WARNING"):
        for step in range(40):
            warning.on_train_batch_end(step)
    assert warning.projected_seconds < 3600 and not caplog.records


@pytest.mark.slow
def test_auto_warns_with_a_projected_time_for_a_full_size_run(tmp_path):
    """The paper's full-width model for 1,000 epochs on this CPU: the job warns within seconds.

    1,000 epochs of 64 steps project to hours on any CPU (at 0.06 s per step, already more
    than one), so the warning must come; the job is killed once it has.
    """
    import selectors

    data = write_prepared(tmp_path / "data", train_count=2048, test_count=64)
    params = write_params(tmp_path / "params.yaml", width=1.0, epochs=1000)
    process = subprocess.Popen(train_command(params, data, tmp_path / "out"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    found, text = None, ""
    try:
        selector = selectors.DefaultSelector()
        selector.register(process.stderr, selectors.EVENT_READ)
        deadline = time.monotonic() + 240
        # Never block past the deadline: wait for output with a timeout, then read a line.
        while found is None and time.monotonic() < deadline:
            if not selector.select(timeout=5):
                if process.poll() is not None:
                    break
                continue
            line = process.stderr.readline()
            if not line:
                break  # the job ended
            text += line
            if "projected to take" in line:
                found = line
    finally:
        process.kill()
        process.wait()
    print(found)
    assert found is not None, text[-2000:]
    assert "trains on the CPU" in found and "hours" in found

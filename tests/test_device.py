"""Where training runs: train.device, the `auto` settings, the progress log and the warning."""

import os
import subprocess
import time

import numpy as np
import pytest

from lossbench.train import callbacks, device
from test_train import PROJECT, train_command, write_params, write_prepared


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
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env={
        key: value for key, value in os.environ.items() if key != "LOSSBENCH_NATIVE_LOGS"})
    elapsed = time.monotonic() - started
    print(f"train.device: gpu refused after {elapsed:.1f} s: {result.stderr.strip()[-400:]}")
    assert result.returncode == 2
    # One line: TensorFlow's start-up noise (absl, the CUDA probe) is left out (issue 19).
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
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
    # The study's projected cost comes in the first epoch, before its end (issue 19).
    assert text.index("The whole study is projected to train for") < text.index("Epoch 2/2")
    assert "\r" not in text and "━" not in text
    assert "1 step(s) per execution, XLA off" in text


def full_study(params_changes=None):
    """StudyCost of the shipped params.yaml on CIFAR-10's 50,000 / 10,000 images."""
    from lossbench.pipeline.params import load_params
    from lossbench.train.study_cost import StudyCost, study_runs

    params = load_params(PROJECT / "params.yaml")
    for section, values in (params_changes or {}).items():
        params[section].update(values)
    labels = np.repeat(np.arange(10), 5000)
    return StudyCost(study_runs(params, labels, 10_000), params["train"]["batch_size"])


def measure(monkeypatch, callback, seconds_per_step, batches, per_call=1):
    """Feed `callback` the ends of the first epoch's calls (each `per_call` steps) on a clock
    that advances `seconds_per_step` per step."""
    clock = {"now": 100.0}
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: clock["now"])
    for batch in range(per_call - 1, batches, per_call):
        clock["now"] += seconds_per_step * per_call
        callback.on_train_batch_end(batch)


def test_the_whole_study_s_projected_cost_is_one_line_early_in_the_first_epoch(monkeypatch, caplog):
    """Issue 19: the CPU warning gave one run's time (34 h) for a study of six runs and tuning.
    The line now prices every run of the study: runs x the time of one run, and the sum."""
    study = full_study()
    line = callbacks.ProjectedTime(study, steps_per_epoch=1563, where="CPU: test (2 cores)", advise=True)
    with caplog.at_level("INFO"):
        measure(monkeypatch, line, 0.5, batches=60)
    # 0.5 s per step; a tuning run: 10 epochs x (ceil(45,000 / 32) + ceil(5,000 / 32) / 3)
    # steps; a training run: 100 x (1,563 + 313 / 3) (as the one-run warning had it: 23.2 h).
    tuning_run, training_run = 0.5 * 10 * (1407 + 157 / 3), 0.5 * 100 * (1563 + 313 / 3)
    assert line.projected_seconds == pytest.approx(42 * tuning_run + 6 * training_run)
    (record,) = caplog.records
    message = record.getMessage()
    assert record.levelname == "WARNING" and message.startswith(
        f"The whole study is projected to train for {line.projected_seconds / 3600:.1f} h on "
        "this machine (CPU: test (2 cores)): 42 tuning runs (6 losses x 7 rates x 1 seed, "
        f"10 epochs) x {tuning_run / 3600:.1f} h + 6 training runs (6 losses x 1 seed, 100 "
        f"epochs) x {training_run / 3600:.1f} h, at 0.500 s per step of 32 images (measured "
        "over steps 7-26 of this run).")
    assert 'pip install -e ".[gpu]"' in message and "\n" not in message
    # A job that trains several runs (tune) writes it once.
    again = callbacks.ProjectedTime(study, steps_per_epoch=1563, where="CPU", advise=True)
    measure(monkeypatch, again, 0.5, batches=60)
    assert len(caplog.records) == 1 and again.projected_seconds is None


def test_the_study_s_runs_follow_its_settings():
    from lossbench.train.study_cost import RunGroup

    default = full_study().groups
    assert default == [
        RunGroup("tuning", 42, "6 losses x 7 rates x 1 seed", 10, 45_000, 5_000),
        RunGroup("training", 6, "6 losses x 1 seed", 100, 50_000, 10_000),
    ]
    held_out = full_study({"train": {"validation": "holdout", "holdout_fraction": 0.2,
                                     "seeds": [0, 1, 2], "losses": ["hinge"]},
                           "tune": {"learning_rates": []}}).groups
    assert held_out == [RunGroup("training", 3, "1 loss x 3 seeds", 100, 40_000, 10_000)]


def test_a_short_study_or_a_gpu_gets_the_line_without_a_warning(monkeypatch, caplog):
    study = full_study({"tune": {"learning_rates": []}, "train": {"epochs": 1}})
    short = callbacks.ProjectedTime(study, steps_per_epoch=1563, where="CPU", advise=True)
    # Several steps per call (a GPU's steps_per_execution): measured between the calls'
    # ends, here after steps 16 and 32 (0-based 15 and 31).
    gpu = callbacks.ProjectedTime(full_study(), steps_per_epoch=1600, where="GPU: H100", advise=False)
    with caplog.at_level("INFO"):
        measure(monkeypatch, short, 0.01, batches=60)
        measure(monkeypatch, gpu, 0.01, batches=64, per_call=16)
    assert [record.levelname for record in caplog.records] == ["INFO", "INFO"]
    assert "6 training runs (6 losses x 1 seed, 1 epoch) x 17 s" in caplog.records[0].getMessage()
    assert "tuning" not in caplog.records[0].getMessage()
    assert "(GPU: H100)" in caplog.records[1].getMessage()
    assert "measured over steps 17-32 of this run" in caplog.records[1].getMessage()
    assert gpu.projected_seconds == pytest.approx(full_study().seconds(0.01))


@pytest.mark.slow
def test_auto_warns_with_a_projected_time_for_a_full_size_run(tmp_path):
    """The paper's full-width model for 1,000 epochs on this CPU: the job warns, with the
    whole study's projected time, within seconds.

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
            if "projected to train for" in line:
                found = line
    finally:
        process.kill()
        process.wait()
    print(found)
    assert found is not None, text[-2000:]
    assert "The whole study is projected to train for" in found and " h on this machine (CPU: " in found
    assert "6 training runs (6 losses x 1 seed, 1000 epochs)" in found

"""`train.precision: auto` on a CPU: chosen by measured training steps, never by the flags.

Every timing here is injected (a fake timer or clock): no test depends on this machine's speed.
"""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from lossbench.pipeline.params import validate_params
from lossbench.train import device, precision, training
from lossbench.train.training_logs import run_information

PROJECT = Path(__file__).resolve().parent.parent


def auto_config(**changes) -> training.TrainConfig:
    params = validate_params(yaml.safe_load((PROJECT / "params.yaml").read_text()))
    params["train"].update({"precision": "auto", "epochs": 3, **changes})
    return training.TrainConfig.from_params(params)


def cpu_runtime(precision_value="auto") -> device.Runtime:
    return device.Runtime(device="cpu", description="CPU: test", precision=precision_value,
                          steps_per_execution=1, jit_compile=False, deterministic=False)


@pytest.fixture
def no_earlier_measurement(monkeypatch):
    monkeypatch.setattr(precision, "_measured", {})


def test_auto_is_measured_on_a_cpu_whatever_its_flags(monkeypatch):
    # Flags that once meant bfloat16 (AVX512_BF16, AMX) no longer decide on a CPU.
    for flags in ({"avx2", "avx512_bf16"}, {"avx2", "amx_bf16"}, {"avx2", "fma"}):
        monkeypatch.setattr(device, "cpu_flags", lambda flags=flags: flags)
        assert device.resolve_precision("auto", "cpu") == "auto"
    # A GPU keeps its documented rule: bfloat16 where tensor cores compute it natively.
    monkeypatch.setattr(device, "gpu_supports_bf16", lambda: True)
    assert device.resolve_precision("auto", "gpu") == "mixed_bfloat16"
    monkeypatch.setattr(device, "gpu_supports_bf16", lambda: False)
    assert device.resolve_precision("auto", "gpu") == "float32"
    assert device.resolve_precision("float32", "gpu") == "float32"
    assert device.resolve_precision("mixed_bfloat16", "cpu") == "mixed_bfloat16"


def test_candidates_add_float16_only_with_avx512_fp16():
    assert precision.candidate_precisions({"avx2", "avx512_bf16"}) == ["float32", "mixed_bfloat16"]
    assert precision.candidate_precisions({"avx512_bf16", "avx512_fp16"}) == [
        "float32", "mixed_bfloat16", "mixed_float16"]


@pytest.mark.parametrize(("rates", "chosen"), [
    # This AVX2 EPYC (bfloat16 emulated), the AVX512_BF16 Xeon of issue 22, the AVX512_BF16 EPYC.
    ({"float32": 71.5, "mixed_bfloat16": 10.8}, "float32"),
    ({"float32": 157.1, "mixed_bfloat16": 94.2}, "float32"),
    ({"float32": 60.0, "mixed_bfloat16": 103.2}, "mixed_bfloat16"),
    # A tie keeps the paper's float32; a float16 that is faster is still not offered.
    ({"float32": 50.0, "mixed_bfloat16": 50.0}, "float32"),
    ({"float32": 50.0, "mixed_bfloat16": 60.0, "mixed_float16": 200.0}, "mixed_bfloat16"),
])
def test_the_faster_offered_precision_is_chosen(rates, chosen):
    assert precision.choose(rates) == chosen
    offered = {name: rate for name, rate in rates.items() if name not in precision.NOT_OFFERED}
    assert all(rates[chosen] >= rate for rate in offered.values())


def test_measure_times_each_candidate_and_logs_one_line(caplog, no_earlier_measurement):
    timings = {"float32": (71.5, 9), "mixed_bfloat16": (10.8, 1)}
    built = []

    def build(name):
        built.append(name)
        return name  # the fake timer reads the precision from its "model"

    with caplog.at_level(logging.INFO, logger="lossbench.train.precision"):
        choice, rates = precision.measure(build, "images", "labels", ["float32", "mixed_bfloat16"],
                                          key="job", timer=lambda model, images, labels: timings[model])
    assert (choice, rates) == ("float32", {"float32": 71.5, "mixed_bfloat16": 10.8})
    assert built == ["float32", "mixed_bfloat16"]
    (line,) = [record.getMessage() for record in caplog.records]
    assert "float32 71.5 images/s over 9 step(s)" in line
    assert "mixed_bfloat16 10.8 images/s over 1 step(s) (0.15x float32)" in line
    assert "chose float32" in line
    # The same job's settings measured again in this process (the tune stage's runs): reused.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lossbench.train.precision"):
        again = precision.measure(build, "images", "labels", ["float32", "mixed_bfloat16"],
                                  key="job", timer=lambda *args: pytest.fail("measured twice"))
    assert again == (choice, rates) and len(built) == 2
    assert "as measured earlier in this process" in caplog.records[0].getMessage()


def test_a_timer_takes_steps_until_its_budget(monkeypatch):
    class Model:
        steps = 0

        def train_on_batch(self, images, labels):
            self.steps += 1

    # Each call to the clock advances it by 0.5 s; the first reading starts the timing.
    ticks = iter(np.arange(100) * 0.5)
    model = Model()
    rate, steps = precision.steps_images_per_s(model, np.zeros((32, 1)), np.zeros(32),
                                               budget_seconds=2.0, max_steps=20,
                                               clock=lambda: float(next(ticks)))
    assert steps == 4 and model.steps == 5  # one warm-up step, untimed
    assert rate == pytest.approx(32 * 4 / 2.0)
    # A step slower than the whole budget is still timed once.
    ticks = iter([0.0, 7.0])
    rate, steps = precision.steps_images_per_s(Model(), np.zeros((32, 1)), np.zeros(32),
                                               clock=lambda: next(ticks))
    assert steps == 1 and rate == pytest.approx(32 / 7.0)


def fake_training(monkeypatch, timings):
    """Models that are only their precision's name, timed by `timings` (images/s)."""
    monkeypatch.setattr(training, "build_training_model",
                        lambda config, loss, seed, classes, runtime: (runtime.precision, None))
    monkeypatch.setattr(precision, "steps_images_per_s",
                        lambda model, images, labels: (timings[model], 3))
    monkeypatch.setattr(device, "cpu_flags", lambda: {"avx2"})


def test_a_fresh_job_measures_and_takes_the_faster(tmp_path, monkeypatch, no_earlier_measurement):
    fake_training(monkeypatch, {"float32": 40.0, "mixed_bfloat16": 90.0})
    images, labels = np.zeros((64, 32, 32, 3), np.uint8), np.zeros(64, np.int32)
    runtime, measured = training.measured_precision(
        auto_config(), cpu_runtime(), "hinge", 0, 10, images, labels, "data", tmp_path / "none.npz")
    assert runtime.precision == "mixed_bfloat16"
    assert measured == {"float32": 40.0, "mixed_bfloat16": 90.0}
    # An explicit precision is not measured.
    explicit = cpu_runtime("float32")
    assert training.measured_precision(auto_config(), explicit, "hinge", 0, 10, images, labels,
                                       "data", tmp_path / "none.npz") == (explicit, None)


@pytest.mark.parametrize("begun_in", ["float32", "mixed_bfloat16"])
def test_a_resumed_job_keeps_the_precision_it_began_in(tmp_path, monkeypatch, begun_in,
                                                       no_earlier_measurement):
    """Whatever a new measurement would say (here: the other precision is faster), an
    unfinished checkpoint's precision is kept, so the resumed run is the uninterrupted one."""
    config = auto_config()
    path = tmp_path / "checkpoint.npz"
    state = {"fingerprint": training.job_fingerprint(config, begun_in, "hinge", 0, "data"),
             "history": [{"epoch": 1, "seconds": 9.0}], "diverged_epoch": None,
             "precision_measured": {"float32": 1.0, "mixed_bfloat16": 2.0}}
    np.savez(path, state=np.array(json.dumps(state)))
    other = "float32" if begun_in == "mixed_bfloat16" else "mixed_bfloat16"
    fake_training(monkeypatch, {begun_in: 1.0, other: 1000.0})
    images, labels = np.zeros((64, 32, 32, 3), np.uint8), np.zeros(64, np.int32)
    runtime, measured = training.measured_precision(config, cpu_runtime(), "hinge", 0, 10,
                                                    images, labels, "data", path)
    assert (runtime.precision, measured) == (begun_in, None)
    # run.json shows the rates measured when the run began, kept in the checkpoint's state.
    run_info = run_information(config, "hinge", 0, runtime, state, 64, 16)
    assert run_info["precision"] == begun_in and run_info["precision_setting"] == "auto"
    assert run_info["precision_measured"] == state["precision_measured"]
    # A finished run's checkpoint is no reason to skip the measurement.
    state["history"] = [{"epoch": epoch, "seconds": 9.0} for epoch in (1, 2, 3)]
    np.savez(path, state=np.array(json.dumps(state)))
    runtime, measured = training.measured_precision(config, cpu_runtime(), "hinge", 0, 10,
                                                    images, labels, "data", path)
    assert runtime.precision == other and measured == {begun_in: 1.0, other: 1000.0}


def test_the_model_is_never_built_with_an_unmeasured_auto():
    with pytest.raises(ValueError, match="train.precision is auto, which on a CPU is measured"):
        training.build_training_model(auto_config(), "hinge", 0, 10, cpu_runtime())

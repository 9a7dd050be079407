"""What each output was made with (lossbench.pipeline.made): the record every stage leaves
beside its output, and the stamp that makes Snakemake remake what DVC (or anyone) made with
other values, or what was made from a file now missing. The end-to-end probes are in
tests/test_pipeline_e2e.py; these check the pieces on files alone."""

import json
import os
from pathlib import Path

import pytest

from lossbench.pipeline.made import STAMP_DIRECTORY, changed_keys, job_files, params_stamp, record_made, record_path
from lossbench.pipeline.params import load_params

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture
def params():
    return load_params(PROJECT / "params.yaml")


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_record_sits_beside_the_output_and_names_the_changed_keys(project, params):
    model = Path("data/models/hinge-seed0.keras")
    model.parent.mkdir(parents=True)
    model.write_bytes(b"model")
    assert record_path(model) == Path("data/models/.hinge-seed0.keras.made.json")
    assert changed_keys("train", params, model) == []  # no record: Snakemake's own rules decide
    record_made("train", params, model)
    assert json.loads(record_path(model).read_text())["stage"] == "train"
    assert changed_keys("train", params, model) == []
    params["model"]["width"] = 0.5
    params["evaluate"]["batch_size"] = 100  # not a key train reads
    assert changed_keys("train", params, model) == ["model.width"]
    record_path(model).write_text("{damaged")
    assert changed_keys("train", params, model) == []


def test_the_stamp_is_dated_now_only_when_the_job_must_run_again(project, params, capsys):
    outputs, inputs = job_files("evaluate", ["hinge-seed0"], ["hinge"], {"loss": "hinge", "seed": "0"})
    assert outputs[0] == "reports/evaluation/hinge-seed0.json"
    assert "data/models/hinge-seed0.keras" in inputs and not any(path.endswith(".py") for path in inputs)
    for path in outputs + inputs:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text("made")
    record_made("evaluate", params, outputs[0])
    stamp = Path(params_stamp("evaluate", params, outputs, inputs))
    assert stamp == STAMP_DIRECTORY / outputs[0] and stamp.stat().st_mtime == 0
    assert capsys.readouterr().err == ""
    # Other values of a key evaluate reads: the stamp is newer than any output.
    params["evaluate"]["batch_size"] = 100
    params_stamp("evaluate", params, outputs, inputs)
    assert stamp.stat().st_mtime > max(os.stat(path).st_mtime for path in outputs) - 1
    assert "it was made with other values of evaluate.batch_size" in capsys.readouterr().err
    params["evaluate"]["batch_size"] = load_params(PROJECT / "params.yaml")["evaluate"]["batch_size"]
    params_stamp("evaluate", params, outputs, inputs)
    assert stamp.stat().st_mtime == 0
    # A deleted model under an evaluation that exists: made again (and so the model too).
    os.remove("data/models/hinge-seed0.keras")
    params_stamp("evaluate", params, outputs, inputs)
    assert stamp.stat().st_mtime > 0
    assert "data/models/hinge-seed0.keras, which it was made from, is missing" in capsys.readouterr().err
    # Nothing made yet: nothing to say, Snakemake runs the job for its missing outputs.
    for path in outputs:
        os.remove(path)
    params_stamp("evaluate", params, outputs, inputs)
    assert stamp.stat().st_mtime == 0


def test_a_job_run_by_hand_elsewhere_records_beside_its_own_output(project, params):
    from argparse import Namespace

    from lossbench.pipeline.made import record_outputs

    elsewhere = project / "elsewhere" / "x.keras"
    elsewhere.parent.mkdir()
    record_outputs(Namespace(stage="train", model=[elsewhere]), params)
    assert record_path(elsewhere).is_file() and not Path("data").exists()
    record_outputs(Namespace(stage="validate", output=Path("gate.txt")), params)  # reads no stage params
    assert not record_path("gate.txt").exists()


def test_an_input_edited_after_its_stage_wrote_it_is_refused_with_the_way_back(project, params):
    """Issue 31, items 2 and 3: a model edited in place (size and time kept) and a summary
    edited by hand used to flow into every result after them."""
    from argparse import Namespace

    from lossbench.pipeline.made import check_inputs

    model = Path("data/models/hinge-seed0.keras")
    model.parent.mkdir(parents=True)
    model.write_bytes(b"weights-1")
    record_made("train", params, model)
    evaluate = Namespace(stage="evaluate", data=Path("data/prepared"), model=model,
                         log_dir=Path("reports/training/hinge-seed0"))
    check_inputs(evaluate)
    model.write_bytes(b"weights-2")  # the same size
    with pytest.raises(ValueError, match=r"data/models/hinge-seed0.keras is not the file `lossbench train` "
                                         r"wrote .*`dvc checkout data/models/hinge-seed0.keras`.*"
                                         r"`dvc repro -f train`.*`snakemake --forcerun train"):
        check_inputs(evaluate)
    # train names the model as its output: never checked there, so a rerun can replace it.
    check_inputs(Namespace(stage="train", data=Path("data/prepared"), tuning=None, model=[model]))
    # DVC gives an aggregate stage the directory: each file in it with a record is checked.
    evaluation = Path("reports/evaluation/hinge-seed0.json")
    evaluation.parent.mkdir(parents=True)
    evaluation.write_text('{"test_accuracy": 0.08}')
    record_made("evaluate", params, evaluation)
    compare = Namespace(stage="compare", evaluations=[Path("reports/evaluation")])
    check_inputs(compare)
    evaluation.write_text('{"test_accuracy": 0.99}')
    with pytest.raises(ValueError, match="reports/evaluation/hinge-seed0.json is not the file `lossbench evaluate`"):
        check_inputs(compare)
    # A file without a record (made before records existed, or brought in by hand): not checked.
    record_path(evaluation).unlink()
    check_inputs(compare)

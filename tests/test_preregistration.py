"""A study's pre-registration, enforced by the run records (lossbench.io.preregistration)."""

import json

import pytest

from lossbench.io import preregistration


def test_runs_that_started_before_the_preregistration_are_refused_by_name(tmp_path):
    (tmp_path / "preregistration.json").write_text(json.dumps(
        {"commit": "a" * 40, "committed_at": "2026-12-07T16:29:00+00:00"}))
    records = {"hinge-seed0": {"started": "2026-12-07T16:40:00+00:00"},
               "hinge-seed1": {"started": "2026-12-07T16:16:00+00:00"},
               "lr0.003-seed100": {}}
    early = preregistration.runs_before(records, preregistration.registered_at(tmp_path))
    assert early == {
        "hinge-seed1": "it started at 2026-12-07T16:16:00+00:00, before the pre-registration "
                       "(2026-12-07T16:29:00+00:00)",
        "lr0.003-seed100": "its record does not say when it started",
    }
    with pytest.raises(ValueError, match="2 run\\(s\\) of .* cannot count as pre-registered: hinge-seed1"):
        preregistration.check_runs(tmp_path, records)
    preregistration.check_runs(tmp_path, {"hinge-seed0": records["hinge-seed0"]})  # passes
    with pytest.raises(ValueError, match="preregistration.json is missing"):
        preregistration.registered_at(tmp_path / "elsewhere")


def test_the_paper_scale_study_is_registered_before_its_runs():
    from pathlib import Path

    study = Path(__file__).resolve().parent.parent / "reports" / "studies" / "gpu-paper-scale"
    when = preregistration.registered_at(study)
    records = {path.parent.parent.name: json.loads(path.read_text())
               for path in (study / "runs").glob("*/training/run.json")}
    assert preregistration.runs_before(records, when) == {}
    assert len(json.loads((study / "preregistration.json").read_text())["commit"]) == 40

"""A study's pre-registration, enforced by its records: no run, tuning included, may have
started before the commit that fixed the study's hypotheses.

In:  the study folder's `preregistration.json` ({"commit", "committed_at"}: the commit that
     added the pre-registration and its committer time, ISO 8601), and the run records
     (`run.json` of each training or tuning run, with `started`, written by
     `lossbench.train.packs.prepare_run`).
Out: `runs_before` (the runs that started before the pre-registration, or whose start is not
     recorded), and `check_runs`, which raises ValueError naming them, for an assembly to refuse.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path


def registered_at(study: Path) -> datetime.datetime:
    """The time the study's pre-registration was committed (its preregistration.json)."""
    path = Path(study) / "preregistration.json"
    if not path.is_file():
        raise ValueError(f"{path} is missing: record the commit that added the study's "
                         "pre-registration and its time there, before any run starts.")
    return datetime.datetime.fromisoformat(json.loads(path.read_text())["committed_at"])


def runs_before(run_records: dict[str, dict], when: datetime.datetime) -> dict[str, str]:
    """{run: why} for the runs whose record says they started before `when`, or does not say
    when they started."""
    early = {}
    for name, record in sorted(run_records.items()):
        started = record.get("started")
        if started is None:
            early[name] = "its record does not say when it started"
        elif datetime.datetime.fromisoformat(started) < when:
            early[name] = f"it started at {started}, before the pre-registration ({when.isoformat()})"
    return early


def check_runs(study: Path, run_records: dict[str, dict]) -> None:
    """Raise ValueError, naming each run, when any started before the study's pre-registration."""
    early = runs_before(run_records, registered_at(study))
    if early:
        listing = "; ".join(f"{name}: {why}" for name, why in early.items())
        raise ValueError(f"{len(early)} run(s) of {study} cannot count as pre-registered: {listing}.")

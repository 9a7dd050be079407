"""The test SLURM cluster is stopped by the test session that started it, and by no other.

pytest's cache, where tests/test_slurm.py notes that it started the cluster, is the checkout's:
a second session run beside the whole suite (a few tests, `-n 0`) used to find the note at its
end and stop the suite's cluster while the suite's SLURM run was waiting on a job (it then hung
until its 900 s limit). The note now names the session that started the cluster.
"""

import os
from types import SimpleNamespace

import conftest
from projects import SLURM_STARTED, session_process


class Cache(dict):
    def set(self, key, value):
        self[key] = value


def test_a_session_stops_only_the_cluster_it_started(monkeypatch):
    stopped = []
    monkeypatch.setattr(conftest.subprocess, "run", lambda command, **kwargs: stopped.append(command))
    config = SimpleNamespace(cache=Cache({SLURM_STARTED: os.getpid() + 1}))

    conftest.pytest_sessionfinish(SimpleNamespace(config=config))  # another session's cluster
    assert stopped == [] and config.cache[SLURM_STARTED] == os.getpid() + 1

    config.cache[SLURM_STARTED] = session_process(config)  # this session's (no xdist: its pid)
    conftest.pytest_sessionfinish(SimpleNamespace(config=config))
    assert len(stopped) == 1 and "stop-slurm.sh" in stopped[0][-1]
    assert config.cache[SLURM_STARTED] is None


def test_an_xdist_worker_names_its_controller():
    worker = SimpleNamespace(workerinput={})
    assert session_process(worker) == os.getppid()
    assert session_process(SimpleNamespace()) == os.getpid()

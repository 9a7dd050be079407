"""The package's shape: stage modules stand alone, and runs are named in one place."""

from pathlib import Path

from lossbench import sources
from lossbench.runs import parse_run_name, run_name, run_names
from lossbench.sources import direct_imports

PACKAGE = Path(__file__).resolve().parent.parent / "workflow" / "lossbench"
# The stages of the DAG, one module each (dvc.yaml's stages, Snakemake's rules).
STAGE_MODULES = ("download", "preprocess", "train", "evaluate", "compare", "figures", "report")


def test_no_stage_module_imports_another_stage_module():
    # Shared pieces (archive reading, the prepared arrays, run names, the model) live in small
    # modules of their own, so a stage can be read, tested and changed on its own.
    offenders = {
        stage: sorted(direct_imports(stage) & set(STAGE_MODULES) - {stage})
        for stage in STAGE_MODULES
    }
    assert {stage: found for stage, found in offenders.items() if found} == {}


def test_direct_imports_sees_every_way_of_importing_a_module(tmp_path, monkeypatch):
    # The test above is only as strict as the import reader: a stage imported in any of these
    # ways, at module level or inside a function, must be found.
    for stage in STAGE_MODULES:
        (tmp_path / f"{stage}.py").write_text("")
    (tmp_path / "probe.py").write_text(
        "import lossbench.download\n"
        "from lossbench import preprocess, train\n"
        "from lossbench.evaluate import run\n"
        "def later():\n"
        "    import lossbench.compare as compare\n"
        "    from lossbench.figures import run\n"
        "    from lossbench.report import run as write_report\n"
    )
    monkeypatch.setattr(sources, "PACKAGE_DIR", tmp_path)
    assert direct_imports("probe") >= set(STAGE_MODULES)


def test_runs_are_named_and_parsed_by_one_function():
    assert run_name("hinge", 3) == "hinge-seed3"
    assert parse_run_name("crammer_singer_hinge-seed12") == ("crammer_singer_hinge", 12)
    assert parse_run_name("not a run") is None
    assert run_names({"losses": ["hinge", "ova_hinge"], "seeds": [0, 1]}) == [
        "hinge-seed0", "hinge-seed1", "ova_hinge-seed0", "ova_hinge-seed1"]
    # No other module spells the pattern out.
    for path in PACKAGE.glob("*.py"):
        if path.name != "runs.py":
            assert 'seed(?P<seed>' not in path.read_text(), path.name
            assert '-seed{seed}' not in path.read_text(), path.name

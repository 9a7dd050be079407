"""The package's shape: stage modules stand alone, and runs are named in one place."""

from pathlib import Path

from lossbench import sources
from lossbench.runs import parse_run_name, run_name, run_names
from lossbench.sources import direct_imports

PACKAGE = Path(__file__).resolve().parent.parent / "workflow" / "lossbench"
# The stages of the DAG, one module each (dvc.yaml's stages, Snakemake's rules).
STAGE_MODULES = ("download", "preprocess", "tune", "train", "evaluate", "compare", "figures", "report")


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
        "from lossbench import preprocess, train, tune\n"
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


# Sizes a newcomer can hold in their head (issue 13): a module fits in a sitting, a function
# on a screen.
MAXIMUM_MODULE_LINES = 400
MAXIMUM_FUNCTION_LINES = 60


def test_modules_and_functions_stay_small():
    import ast

    too_long = {}
    for path in sorted(PACKAGE.glob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > MAXIMUM_MODULE_LINES:
            too_long[path.name] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAXIMUM_FUNCTION_LINES:
                    too_long[f"{path.name}:{node.name}"] = length
    assert too_long == {}


def test_a_stage_is_found_everywhere_by_its_one_name():
    """Stage `x`: rule `x` in workflow/rules/x.smk, DVC stage `x`, module lossbench/x.py,
    tests/test_x.py and, if it has parameters of its own, params.yaml's section `x`."""
    import yaml

    from lossbench.params import STAGE_PARAMS, load_params
    from lossbench.stages import STAGES

    project = PACKAGE.parent.parent
    for stage in STAGES:
        assert (PACKAGE / f"{stage.name}.py").is_file(), stage.name
        assert f"\nrule {stage.name}:\n" in (project / "workflow/rules" / f"{stage.name}.smk").read_text()
        assert stage.name in yaml.safe_load((project / stage.dvc_file).read_text())["stages"]
        assert (project / "tests" / f"test_{stage.name}.py").is_file(), stage.name
    # Every params section but `model` (built by train, described by report) is a stage's,
    # and a stage reads its own section's keys.
    sections = set(load_params(project / "params.yaml"))
    assert sections - {"model"} <= {stage.name for stage in STAGES}
    for section in sections - {"model"}:
        assert any(key.startswith(f"{section}.") for key in STAGE_PARAMS[section]), section
    assert set(STAGE_MODULES) == {stage.name for stage in STAGES if stage.dvc_file == "dvc.yaml"}

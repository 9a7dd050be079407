"""The package's shape: stage modules stand alone, and runs are named in one place."""

import ast
from pathlib import Path

from lossbench.runs import parse_run_name, run_name, run_names

PACKAGE = Path(__file__).resolve().parent.parent / "workflow" / "lossbench"
# The stages of the DAG, one module each (dvc.yaml's stages, Snakemake's rules).
STAGE_MODULES = ("download", "preprocess", "train", "evaluate", "compare", "figures", "report")


def imported_lossbench_modules(path: Path) -> set[str]:
    """The lossbench modules `path` imports, at module level or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "lossbench":
                names.update(alias.name for alias in node.names)
            elif node.module.startswith("lossbench."):
                names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names.update(alias.name.split(".")[1] for alias in node.names
                         if alias.name.startswith("lossbench."))
    return names


def test_no_stage_module_imports_another_stage_module():
    # Shared pieces (archive reading, the prepared arrays, run names, the model) live in small
    # modules of their own, so a stage can be read, tested and changed on its own.
    offenders = {
        stage: sorted(imported_lossbench_modules(PACKAGE / f"{stage}.py") & set(STAGE_MODULES) - {stage})
        for stage in STAGE_MODULES
    }
    assert {stage: found for stage, found in offenders.items() if found} == {}


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

"""The package's shape: one folder per stage, each standing alone on shared folders below it,
and runs named in one place."""

from pathlib import Path

from lossbench.pipeline import sources
from lossbench.pipeline.runs import parse_run_name, run_name, run_names
from lossbench.pipeline.sources import direct_imports, folder_modules, imported_names

PACKAGE = Path(__file__).resolve().parent.parent / "workflow" / "lossbench"
# The stages of the DAG, one folder each (dvc.yaml's stages, Snakemake's rules); the tune stage
# is a module of train/ (sources.HOSTED_STAGES).
STAGE_FOLDERS = ("download", "preprocess", "train", "evaluate", "compare", "figures", "report")
# Code shared by the stages, below them: it imports no stage folder.
SHARED_FOLDERS = ("core", "io", "pipeline", "presentation")


def test_the_package_holds_the_stage_and_shared_folders_and_the_front_ends_on_top():
    folders = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}
    assert folders == set(STAGE_FOLDERS) | set(SHARED_FOLDERS)
    assert set(sources.stage_folders()) == set(STAGE_FOLDERS)
    assert set(SHARED_FOLDERS) == {*sources.SHARED_FOLDERS, sources.NOT_CODE_FOLDER}
    on_top = {path.name for path in PACKAGE.glob("*.py")}
    # The benchmark's modules sit on top, outside every stage's folder, so that editing them
    # makes no stage's result stale (bench.py, its table, its step timing, the pack curve).
    assert on_top == {"__init__.py", "cli.py", "bench.py", "bench_table.py", "bench_packs.py",
                      "step_rates.py"}


def test_no_stage_folder_imports_another_and_shared_code_imports_no_stage():
    # A stage's helpers live in its folder, and what two stages share lives in a shared folder,
    # so a stage can be read, tested and changed on its own.
    offenders = {}
    for folder in STAGE_FOLDERS + SHARED_FOLDERS:
        for module in folder_modules(folder):
            reached = {name.split(".")[0] for name in direct_imports(module)}
            found = sorted(reached & set(STAGE_FOLDERS) - {folder})
            if found:
                offenders[module] = found
    assert offenders == {}


# What stage and shared code takes from the modules that are no stage's code dependency
# (pipeline/, __init__.py, cli.py; lossbench.pipeline.sources says why): names that say which
# keys, files or runs, or record the version, never how a result is computed. A new entry
# needs that judgement; code that decides a result belongs in a stage or shared folder, where
# it is a dependency.
DESCRIPTIVE_IMPORTS = {
    ("__init__", "__version__"),  # recorded in run.json, the report and the User-Agent
    ("pipeline.params", "TRAIN_KEYS"),  # which keys make TrainConfig (their values are params)
    ("pipeline.params", "get_key"),
    ("pipeline.params", "with_defaults"),  # compare's section with the schema's defaults
    ("pipeline.runs", "parse_run_name"),  # the file names of runs
    ("pipeline.runs", "run_name"),
    ("pipeline.runs", "tuning_run_name"),
    ("pipeline.sources", "source_digest"),  # the checkpoint's fingerprint of this very code
}


def test_stages_take_only_descriptions_from_what_is_no_code_dependency():
    import ast

    taken = set()
    for folder in STAGE_FOLDERS + sources.SHARED_FOLDERS:
        for module in folder_modules(folder):
            for source, name in imported_names(module):
                if sources.decides_no_result(source):
                    taken.add((source, name))
            # `import lossbench`, then `lossbench.NAME`: the names it uses.
            tree = ast.parse(sources.module_file(module).read_text())
            taken |= {("__init__", node.attr) for node in ast.walk(tree)
                      if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                      and node.value.id == "lossbench"}
    taken.discard(("__init__", ""))
    assert taken == DESCRIPTIVE_IMPORTS


def test_direct_imports_sees_every_way_of_importing_a_module(tmp_path, monkeypatch):
    # The test above is only as strict as the import reader: a module imported in any of these
    # ways, at module level or inside a function, absolute or relative, must be found.
    for folder in STAGE_FOLDERS + ("core", "io"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("")
    for module in ("train/tune.py", "core/losses.py", "core/model.py", "io/atomic.py"):
        (tmp_path / module).write_text("")
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "train" / "probe.py").write_text(
        "import lossbench.download\n"
        "from lossbench import preprocess, __version__\n"
        "from lossbench.evaluate import run\n"
        "from lossbench.core import losses\n"
        "from lossbench.core.model import build_model\n"
        "import lossbench.io.atomic\n"
        "from . import tune\n"
        "from .. import compare\n"
        "def later():\n"
        "    from ..figures import run\n"
        "    from lossbench.report import run as write_report\n"
    )
    monkeypatch.setattr(sources, "PACKAGE_DIR", tmp_path)
    assert direct_imports("train.probe") == {
        "download", "preprocess", "__init__", "evaluate", "core.losses", "core.model",
        "io.atomic", "train.tune", "compare", "figures", "report"}


def test_runs_are_named_and_parsed_by_one_function():
    assert run_name("hinge", 3) == "hinge-seed3"
    assert parse_run_name("crammer_singer_hinge-seed12") == ("crammer_singer_hinge", 12)
    assert parse_run_name("not a run") is None
    assert run_names({"losses": ["hinge", "ova_hinge"], "seeds": [0, 1]}) == [
        "hinge-seed0", "hinge-seed1", "ova_hinge-seed0", "ova_hinge-seed1"]
    # No other module spells the pattern out.
    for path in PACKAGE.rglob("*.py"):
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
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        name = path.relative_to(PACKAGE).as_posix()
        if len(text.splitlines()) > MAXIMUM_MODULE_LINES:
            too_long[name] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAXIMUM_FUNCTION_LINES:
                    too_long[f"{name}:{node.name}"] = length
    assert too_long == {}


def test_a_stage_is_found_everywhere_by_its_one_name():
    """Stage `x`: rule `x` in workflow/rules/x.smk, DVC stage `x`, folder lossbench/x/ (its
    entry module x/__init__.py; the tune stage, training at several learning rates, is
    train/tune.py), tests/test_x.py and, if it has parameters of its own, params.yaml's
    section `x`. The benchmark, no stage of the study's DAG, is bench.py on top."""
    import yaml

    from lossbench.pipeline.params import load_params
    from lossbench.pipeline.stages import STAGE_PARAMS, STAGES

    project = PACKAGE.parent.parent
    hosted = sources.HOSTED_STAGES
    for stage in STAGES:
        if stage.name in hosted:
            entry = PACKAGE / hosted[stage.name] / f"{stage.name}.py"
        elif stage.dvc_file == "dvc.yaml":
            entry = PACKAGE / stage.name / "__init__.py"
        else:
            entry = PACKAGE / f"{stage.name}.py"
        assert entry.is_file(), stage.name
        assert sources.module_file(sources.stage_module(stage.name)) == entry
        assert f"\nrule {stage.name}:\n" in (project / "workflow/rules" / f"{stage.name}.smk").read_text()
        assert stage.name in yaml.safe_load((project / stage.dvc_file).read_text())["stages"]
        assert (project / "tests" / f"test_{stage.name}.py").is_file(), stage.name
    # Every params section but `model` (built by train, described by report) is a stage's,
    # and a stage reads its own section's keys.
    sections = set(load_params(project / "params.yaml"))
    assert sections - {"model"} <= {stage.name for stage in STAGES}
    for section in sections - {"model"}:
        assert any(key.startswith(f"{section}.") for key in STAGE_PARAMS[section]), section
    dag_stages = {stage.name for stage in STAGES if stage.dvc_file == "dvc.yaml"}
    assert set(STAGE_FOLDERS) | set(hosted) == dag_stages
    assert set(hosted.values()) <= set(STAGE_FOLDERS)

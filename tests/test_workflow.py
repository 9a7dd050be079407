"""The two orchestrators describe one DAG: same stages, inputs, outputs, params and commands.

Both are made from one stage table (lossbench.pipeline.stages): the rules read it, dvc.yaml is
generated from it. These tests check the result as each tool sees it. Snakemake's view comes
from a forced dry run (`snakemake -n --forceall -p`: every job with its inputs, outputs and
shell command); DVC's from its own index of dvc.yaml. Neither needs the data to exist, so this
runs in seconds.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lossbench.pipeline.dvc_yaml import DVC_FILES, render_dvc_yaml
from lossbench.pipeline.made import STAMP_DIRECTORY
from lossbench.pipeline.params import load_params
from lossbench.pipeline.params_gate import GATE_FILE, GATE_STAGE
from lossbench.pipeline.runs import run_names
from lossbench.pipeline.stages import STAGE_PARAMS, snakemake_outputs, snakemake_shell
from lossbench.presentation.loss_colours import LOSS_COLOURS

PROJECT = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
LOG_SUFFIX = re.compile(r"\s*2>&1 \| \(trap '' INT TERM; exec tee \S+\)$")


def snakemake_jobs() -> dict[str, dict]:
    """{job name as DVC names it: {"inputs", "outputs", "cmd"}} from a forced dry run."""
    result = subprocess.run(
        [*SNAKEMAKE, "--dry-run", "--forceall", "--printshellcmds", "--cores", "1"],
        cwd=PROJECT, capture_output=True, text=True, check=True,
    )
    jobs: dict[str, dict] = {}
    for block in re.split(r"^rule ", result.stdout + result.stderr, flags=re.M)[1:]:
        rule = block.split(":", 1)[0]
        if rule == "all":
            continue
        fields = dict(re.findall(r"^    (input|output): (.*)$", block, re.M))
        command = LOG_SUFFIX.sub("", re.search(r"^Shell command: (.*)$", block, re.M)[1].strip())
        match = re.search(r"--loss (\S+) --seed (\d+)", command)
        per_loss = re.search(r"--loss (\S+)", command)
        name = rule + (f"@{match[1]}-{match[2]}" if match else f"@{per_loss[1]}" if per_loss else "")
        inputs = {path for path in fields.get("input", "").split(", ") if path}
        # Each job's stamp (lossbench.pipeline.made), Snakemake's own: DVC compares params itself.
        stamps = {path for path in inputs if path.startswith(f"{STAMP_DIRECTORY}/")}
        assert len(stamps) == 1, (name, inputs)
        jobs[name] = {
            "inputs": inputs - stamps,
            "outputs": {path for path in fields["output"].split(", ")},
            "cmd": " ".join(command.split()),
        }
    return jobs


SCHEMA_FILE = "workflow/schemas/params.schema.yaml"


def dvc_jobs() -> dict[str, dict]:
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    repo = Repo(str(PROJECT))
    jobs = {}
    for stage in repo.index.stages:
        if Path(stage.dvcfile.path) != PROJECT / "dvc.yaml":
            continue  # benchmarks/dvc.yaml: outside the study's DAG, as `bench` is in Snakemake
        jobs[stage.name] = {
            "inputs": {dep.def_path for dep in stage.deps if not isinstance(dep, ParamsDependency)},
            "outputs": {out.def_path for out in stage.outs},
            "params": [key for dep in stage.deps if isinstance(dep, ParamsDependency)
                       for key in dep.params],
            "cmd": " ".join(stage.cmd.split()),
        }
    # DVC's own first stage (lossbench.pipeline.params_gate), which Snakemake does while it
    # parses: every other stage depends on its file; the two DAGs agree on all else.
    gate = jobs.pop(GATE_STAGE)
    assert gate["outputs"] == {GATE_FILE} and gate["inputs"] == {"params.yaml", SCHEMA_FILE}
    for job in jobs.values():
        job["inputs"].remove(GATE_FILE)
    return jobs


def expand_directories(inputs: set[str], all_outputs: set[str]) -> set[str]:
    """DVC may depend on a directory holding other stages' outputs, or on a folder of the
    package's code; Snakemake lists the files."""
    expanded = set()
    for path in inputs:
        inside = {output for output in all_outputs if output.startswith(path + "/")}
        if path.startswith("workflow/lossbench/") and (PROJECT / path).is_dir():
            inside = {code.relative_to(PROJECT).as_posix()
                      for code in (PROJECT / path).rglob("*.py")}
        expanded |= inside or {path}
    return expanded


def expand_command(command: str, inputs: set[str], all_outputs: set[str]) -> str:
    """DVC passes an aggregate stage the directory of the per-run files (it cannot put a
    list from params.yaml into a command); Snakemake lists the files, in run order."""
    params = load_params(PROJECT / "params.yaml")
    order = run_names(params["train"]) + params["train"]["losses"]  # per-run files, per-loss files
    words = []
    for word in command.split():
        inside = [output for output in all_outputs if output.startswith(word + "/")]
        if word in inputs and inside:
            inside.sort(key=lambda output: order.index(Path(output).name.removesuffix(".json")))
            words.extend(inside)
        else:
            words.append(word)
    return " ".join(words)


@pytest.fixture(scope="module")
def both_dags():
    return snakemake_jobs(), dvc_jobs()


def test_same_stage_names(both_dags):
    snakemake, dvc = both_dags
    assert set(snakemake) == set(dvc)
    runs = run_names(load_params(PROJECT / "params.yaml")["train"])
    assert {name for name in dvc if name.startswith("train@")} == {
        "train@" + run.replace("-seed", "-") for run in runs
    }


def test_same_inputs_outputs_and_commands(both_dags):
    snakemake, dvc = both_dags
    all_outputs = {output for job in dvc.values() for output in job["outputs"]}
    for name, job in dvc.items():
        assert snakemake[name]["outputs"] == job["outputs"], name
        assert snakemake[name]["inputs"] == expand_directories(job["inputs"], all_outputs), name
        assert snakemake[name]["cmd"] == expand_command(job["cmd"], job["inputs"], all_outputs), name


def test_each_stage_lists_exactly_the_params_it_reads(both_dags):
    _, dvc = both_dags
    for name, job in dvc.items():
        stage = name.split("@")[0]
        assert sorted(job["params"]) == sorted(STAGE_PARAMS[stage]), name
    rules = "\n".join(path.read_text() for path in (PROJECT / "workflow/rules").glob("*.smk"))
    for stage in STAGE_PARAMS:
        block = re.search(rf"^rule {stage}:\n(.*?)(?=^rule |\Z)", rules, re.S | re.M)
        assert block, f"no Snakemake rule {stage}"
        assert f'stage_values("{stage}")' in block[1], f"rule {stage} does not pass its params"


def test_every_rule_has_a_log_and_calls_lossbench():
    rules = "\n".join(path.read_text() for path in (PROJECT / "workflow/rules").glob("*.smk"))
    blocks = re.findall(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", rules, re.S | re.M)
    # `bench` is a rule outside the study's DAG (and outside dvc.yaml: benchmarks/dvc.yaml).
    assert {name for name, _ in blocks} == set(STAGE_PARAMS) | {"bench"}
    for name, body in blocks:
        assert "log:" in body, name
        # The rule's command is the stage table's (the dry run above checks what it expands to).
        assert f'stage_command("{name}")' in body, name
        assert snakemake_shell(name).startswith(f"lossbench {name} "), name
        assert "script:" not in body, name


def test_bench_is_the_same_command_under_both_tools():
    import yaml

    rule = (PROJECT / "workflow/rules/bench.smk").read_text()
    stage = yaml.safe_load((PROJECT / "benchmarks/dvc.yaml").read_text())["stages"]["bench"]
    assert snakemake_shell("bench") == f"{stage['cmd']} 2>&1 | (trap '' INT TERM; exec tee {{log}})"
    assert 'stage_command("bench")' in rule and 'stage_outputs("bench")' in rule
    assert snakemake_outputs("bench")["benchmark"].path == "reports/benchmarks/local.json"
    assert "reports/benchmarks/local.json" in str(stage["outs"])


def test_the_committed_dvc_yaml_files_are_generated_from_the_stage_table(tmp_path):
    """dvc.yaml is written by `lossbench dvc-yaml` from lossbench.pipeline.stages, never by hand,
    and the DVC plot templates' loss colours from lossbench.presentation.loss_colours."""
    import shutil

    from lossbench.cli import main
    from lossbench.pipeline.generated import GENERATED_FILES

    assert main(["dvc-yaml", "--root", str(PROJECT), "--check"]) == 0
    # And the check notices a stale file (here: a copy with one dependency dropped, and a
    # template whose hinge is drawn in another colour).
    (tmp_path / "benchmarks").mkdir()
    shutil.copytree(PROJECT / "workflow/plots", tmp_path / "workflow/plots")
    for name in DVC_FILES:
        (tmp_path / name).write_text(render_dvc_yaml(name))
    stale = (tmp_path / "dvc.yaml").read_text().replace("      - data/raw/archive\n", "", 1)
    (tmp_path / "dvc.yaml").write_text(stale)
    template = tmp_path / "workflow/plots/per_run.json"
    template.write_text(template.read_text().replace(LOSS_COLOURS["hinge"], "#000000"))
    assert main(["dvc-yaml", "--root", str(tmp_path), "--check"]) == 1
    assert main(["dvc-yaml", "--root", str(tmp_path)]) == 0
    for name in GENERATED_FILES:
        assert (tmp_path / name).read_text() == (PROJECT / name).read_text(), name


def test_one_colour_per_loss_in_every_figure_and_dvc_plot():
    """The DVC templates colour by loss with the registry's colours, the figures draw each
    loss in its own (issue 32: hinge was red in one figure and orange in another)."""
    import json

    from lossbench.core.losses import LOSS_NAMES
    from lossbench.presentation.loss_colours import loss_colour

    assert list(LOSS_COLOURS) == list(LOSS_NAMES)
    assert len(set(LOSS_COLOURS.values())) == len(LOSS_COLOURS)
    # A loss added without a colour still gets one, always the same, not a registered one.
    assert loss_colour("a_new_loss") == loss_colour("a_new_loss")
    assert loss_colour("a_new_loss") not in LOSS_COLOURS.values()
    for name in ("per_loss", "per_run"):
        text = (PROJECT / f"workflow/plots/{name}.json").read_text()
        scales = [match for match in re.findall(r'"field": "loss",[^}]*"scale": (\{[^}]*\})', text, re.S)]
        assert scales, name
        for scale in scales:
            scale = json.loads(scale)
            assert dict(zip(scale["domain"], scale["range"])) == LOSS_COLOURS, name


def test_dvc_yaml_is_a_yaml_document_that_round_trips():
    """dvc.yaml is written by a YAML library (ruamel.yaml) from `dvc_document`: read back it is
    the document's data, with each folded command the stage's command, and read and written
    again it is the same text, comments and folds included."""
    import io
    import json

    import yaml
    from ruamel.yaml import YAML

    from lossbench.pipeline.dvc_yaml import dvc_command, dvc_document
    from lossbench.pipeline.stages import STAGES

    writer = YAML()
    writer.indent(mapping=2, sequence=4, offset=2)
    writer.width = 4096
    for name in DVC_FILES:
        text = render_dvc_yaml(name)
        data = yaml.safe_load(text)
        assert data == json.loads(json.dumps(dvc_document(name)))
        for entry in STAGES:
            if entry.dvc_file == name:
                assert data["stages"][entry.name]["cmd"] == dvc_command(entry)
        assert max(len(line) for line in text.splitlines()) <= 100
        stream = io.StringIO()
        writer.dump(writer.load(text), stream)
        assert stream.getvalue() == text


def test_snakemake_lint_is_clean():
    result = subprocess.run([*SNAKEMAKE, "--lint"], cwd=PROJECT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_snakefmt_is_clean():
    """The Snakefile and the rules are as snakefmt (pinned in the test extra) writes them."""
    files = ["Snakefile", *sorted(str(path.relative_to(PROJECT))
                                  for path in (PROJECT / "workflow/rules").glob("*.smk"))]
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", *files], cwd=PROJECT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"All {len(files)} file(s) would be left unchanged" in result.stderr


def test_ruff_is_clean():
    """The package and the tests pass `ruff check` with pyproject.toml's rules (pinned in the
    test extra): pyflakes, pycodestyle and sorted imports."""
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "workflow/lossbench", "tests"],
                            cwd=PROJECT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_parsing_the_workflow_does_not_import_tensorflow():
    """`snakemake -n` must stay fast: the Snakefile imports only lossbench.pipeline.params."""
    code = (
        "import sys, runpy; sys.argv = ['snakemake', '-n', '--quiet', 'all'];\n"
        "from snakemake.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_headline_is_the_one_dvc_metric():
    """`dvc metrics show/diff` and `dvc exp show` show only the headline (each loss's mean test
    accuracy); the per-run review files, the full evaluations, the summary and the image
    counts are plain outputs that git tracks."""
    from dvc.repo import Repo

    repo = Repo(str(PROJECT))
    metrics, untracked_by_cache = set(), set()
    for stage in repo.index.stages:
        if Path(stage.dvcfile.path) != PROJECT / "dvc.yaml":
            continue
        for out in stage.outs:
            if out.metric:
                metrics.add(out.def_path)
            if not out.use_cache:
                untracked_by_cache.add(out.def_path)
    runs = run_names(load_params(PROJECT / "params.yaml")["train"])
    assert metrics == {"reports/headline.json"}
    expected_plain = {f"reports/{kind}/{run}.json" for run in runs for kind in ("evaluation", "metrics")} | {
        "reports/summary.json", "reports/data/counts.json", "reports/epochs.csv"}
    assert expected_plain | metrics <= untracked_by_cache


# ---------------------------------------------------------------------------------------
# Jobs read exactly the config the DAG was built from: params.yaml (issue 12)
# ---------------------------------------------------------------------------------------


def dry_run(root: Path, *options: str):
    from projects import run

    result = run(["snakemake", "--dry-run", "--cores", "1", *options], root, check=False)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize(
    "options",
    [["--configfile", "other.yaml"], ["--config", 'train={"validation": "holdout"}']],
    ids=["configfile", "config"],
)
def test_other_config_than_params_yaml_is_refused(tmp_path, options):
    from projects import copy_project, set_params

    root = copy_project(tmp_path)
    (root / "other.yaml").write_text((root / "params.yaml").read_text())
    set_params(root, **{"train.epochs": 2})

    status, output = dry_run(root, *options)

    assert status != 0
    assert "lossbench reads its parameters from params.yaml only" in output
    assert "Edit params.yaml" in output and "dvc exp run -S key=value" in output
    assert dry_run(root)[0] == 0


def test_a_dotted_config_key_is_stopped_by_snakemake_itself(tmp_path):
    """Issue 20, D1: `--config train.epochs=2` never reaches the Snakefile: Snakemake refuses
    the dotted name while parsing its options. The README says so, since lossbench cannot
    word that refusal; the run does nothing."""
    from projects import copy_project

    root = copy_project(tmp_path)
    status, output = dry_run(root, "--config", "train.epochs=2")

    assert status != 0
    assert "Invalid config definition: Config entry must start with a valid identifier" in output
    readme = " ".join((PROJECT / "README.md").read_text().split())
    assert "A dotted key (`snakemake --config train.epochs=2`) is refused by Snakemake itself" in readme


def test_a_yaml_syntax_error_names_its_line_and_column(tmp_path):
    from projects import copy_project

    root = copy_project(tmp_path)
    lines = (root / "params.yaml").read_text().splitlines()
    index = next(number for number, line in enumerate(lines) if line.strip().startswith("epochs:"))
    lines[index] = "  epochs: [2"
    (root / "params.yaml").write_text("\n".join(lines) + "\n")

    status, output = dry_run(root)

    assert status != 0
    assert re.search(r"params\.yaml is not valid YAML: line \d+, column \d+: ", output), output
    assert f"at line {index + 1}, column 11" in output


def test_code_dependencies_are_the_files_a_stage_runs(both_dags):
    """Each stage depends on the code that decides its results: the files Python runs when it
    runs, its entry module and what that imports, with their packages' __init__.py
    (lossbench.pipeline.sources), the same files in dvc.yaml and in the rules."""
    from lossbench.pipeline.sources import code_dependencies, code_files

    snakemake, dvc = both_dags
    for name, job in dvc.items():
        stage = name.split("@")[0]  # a matrix stage: train@categorical_crossentropy-0
        code = {path for path in job["inputs"] if path.startswith("workflow/lossbench/")}
        assert code == set(code_dependencies(stage)) == set(code_files(stage)), name
        rule_inputs = snakemake[name]["inputs"] if name in snakemake else next(
            job["inputs"] for other, job in snakemake.items() if other.split("@")[0] == stage)
        rule_code = {path for path in rule_inputs if path.startswith("workflow/lossbench/")}
        assert rule_code == code, name
    # The train stage: its folder's files but tune.py (training never runs it), the model,
    # the losses, the augmentation and the batch order, and the files it reads and writes its
    # arrays with; nothing that only describes the pipeline, no front end, no other stage.
    train = code_dependencies("train")
    package = "workflow/lossbench/"
    assert [path.removeprefix(package) for path in train if not path.startswith(f"{package}train/")] == [
        "core/__init__.py", "core/augment.py", "core/batches.py", "core/losses.py", "core/model.py",
        "io/__init__.py", "io/atomic.py", "io/digests.py", "io/prepared.py"]
    assert f"{package}train/training.py" in train and f"{package}train/tune.py" not in train
    # The tune stage runs the training loop: all of train's code, and tune.py.
    assert set(code_dependencies("tune")) == set(train) | {f"{package}train/tune.py"}


def test_the_training_fingerprint_covers_the_code_that_decides_training(tmp_path, monkeypatch):
    """The checkpoint's code digest hashes the train stage's code files: a version bump or a
    comment in params.py leaves it as it was, an edit to a loss changes it."""
    import shutil

    from lossbench.pipeline import sources

    shutil.copytree(PROJECT / "workflow", tmp_path / "workflow",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    package = tmp_path / "workflow" / "lossbench"
    monkeypatch.setattr(sources, "PACKAGE_DIR", package)
    sources.module_closure.cache_clear()
    try:
        files = sources.code_files("train")
        assert "workflow/lossbench/train/training.py" in files
        assert "workflow/lossbench/core/losses.py" in files
        for left_out in ("workflow/lossbench/__init__.py", "workflow/lossbench/cli.py"):
            assert left_out not in files
        assert not any("/pipeline/" in path or "/report/" in path for path in files)
        before = sources.source_digest("train")
        with (package / "__init__.py").open("a") as init:
            init.write('__version__ = "0.1.1"\n')
        with (package / "pipeline" / "params.py").open("a") as params:
            params.write("# A comment changes no result.\n")
        assert sources.source_digest("train") == before
        with (package / "core" / "losses.py").open("a") as losses:
            losses.write("# An edit to the losses.\n")
        assert sources.source_digest("train") != before
    finally:
        sources.module_closure.cache_clear()


def test_an_aggregate_stage_reads_the_same_runs_from_files_or_their_directory(tmp_path):
    """Snakemake gives compare each run's file, DVC their directory (it cannot put a list
    from params.yaml into a command); both give one summary."""
    import json

    import yaml

    from lossbench.cli import main
    from studies import STUDY, study_params, write_study

    _, metrics_paths, _ = write_study(tmp_path / "study", STUDY)
    # A stray evaluation of a run that params.yaml does not hold: the directory form skips it.
    stray = metrics_paths[0].parent / "ova_hinge-seed9.json"
    stray.write_text(metrics_paths[0].read_text())
    params = study_params()
    params["train"].update(losses=list(STUDY), seeds=[0, 1, 2])
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    summaries = []
    for form, inputs in (("files", [str(path) for path in metrics_paths]),
                         ("directory", [str(metrics_paths[0].parent)])):
        output = tmp_path / f"{form}.json"
        assert main(["--params", str(params_path), "compare", "--evaluations", *inputs,
                     "--output", str(output), "--headline", str(tmp_path / "h.json")]) == 0
        summaries.append(json.loads(output.read_text()))
    assert all(summary == summaries[0] for summary in summaries)
    assert summaries[0]["runs"] == 9 and set(summaries[0]["losses"]) == set(STUDY)

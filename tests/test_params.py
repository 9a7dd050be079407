"""params.yaml validation: every kind of bad value stops the run with a message naming the key."""

import copy
import re
from pathlib import Path

import pytest
import yaml

from lossbench.pipeline.params import (
    ParamsError,
    load_params,
    stage_fingerprint,
    validate_params,
)
from lossbench.pipeline.stages import STAGE_PARAMS

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture
def params():
    return yaml.safe_load((PROJECT / "params.yaml").read_text())


def test_shipped_params_are_valid_and_the_paper_defaults(params):
    validated = load_params(PROJECT / "params.yaml")
    train = validated["train"]
    assert (train["batch_size"], train["learning_rate"], train["decay"]) == (32, 0.01, 1e-6)
    assert (train["momentum"], train["nesterov"], train["epochs"]) == (0.9, True, 100)
    assert validated["download"]["md5"] == "c58f30108f718f92721af3b95e74349a"
    assert validated["model"]["width"] == 1.0


def test_every_key_has_a_comment():
    """Each key in params.yaml is preceded by a comment saying what it means."""
    lines = (PROJECT / "params.yaml").read_text().splitlines()
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("-"):
            continue
        is_section = not line.startswith(" ")
        inside_paper_table = line.startswith("    ") and "{" in line
        if is_section or inside_paper_table:
            continue
        previous = lines[index - 1].strip()
        assert previous.startswith("#"), f"params.yaml line {index + 1} has no comment: {line!r}"


def test_defaults_are_filled_in(params):
    del params["train"]["batch_size"]
    del params["evaluate"]["batch_size"]
    validated = validate_params(params)
    assert validated["train"]["batch_size"] == 32
    assert validated["evaluate"]["batch_size"] == 500


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda p: p["train"].__setitem__("learning_rat", 0.1), "unknown key train.learning_rat"),
        (lambda p: p.__setitem__("trian", {}), "unknown key trian"),
        (lambda p: p["train"].__setitem__("epochs", "ten"), "train.epochs is 'ten'"),
        (lambda p: p["train"].__setitem__("epochs", -1), "train.epochs is -1; it must be >= 1"),
        # Issue 20, D8: a typo of absurd size is refused before anything runs.
        (lambda p: p["train"].__setitem__("epochs", 10**9), "train.epochs is 1000000000; it must be <= 100000"),
        (lambda p: p["tune"].__setitem__("epochs", 10**9), "tune.epochs is 1000000000; it must be <= 100000"),
        (lambda p: p["train"].__setitem__("batch_size", 0), "train.batch_size is 0"),
        (lambda p: p["preprocess"].__setitem__("train_size", -5), "preprocess.train_size is -5"),
        (lambda p: p["train"].__setitem__("seeds", [-1]), "train.seeds[0] is -1"),
        (lambda p: p["train"].__setitem__("losses", ["hinge", "no_such_loss"]),
         "train.losses[1] is 'no_such_loss'; allowed values: categorical_crossentropy"),
        (lambda p: p["preprocess"].__setitem__("dataset", "no_such_dataset"),
         "preprocess.dataset is 'no_such_dataset'; allowed values"),
        (lambda p: p["train"].__setitem__("validation", "train"), "train.validation is 'train'"),
        (lambda p: p["download"].__setitem__("md5", "xyz"), "download.md5"),
        (lambda p: p["model"].__setitem__("width", 0), "model.width is 0; it must be > 0"),
        (lambda p: p["train"].__setitem__("nesterov", "yes"), "train.nesterov is 'yes'"),
    ],
)
def test_bad_values_are_named(params, mutate, expected):
    mutate(params)
    with pytest.raises(ParamsError) as error:
        validate_params(params)
    assert expected in str(error.value)


def test_no_checksum_and_no_source_is_refused(params):
    params["download"]["md5"] = None
    with pytest.raises(ParamsError, match="download.md5 and download.sha256 are both null"):
        validate_params(params)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(broken)


def test_snakemake_validator_refuses_the_same_errors(params):
    """The schema is a plain JSON Schema that Snakemake's own validate() reads too (the
    Snakefile validates through lossbench.pipeline.params, which adds the cross-key checks)."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    validate(copy.deepcopy(params), str(PROJECT / "workflow/schemas/params.schema.yaml"))
    params["train"]["losses"] = ["no_such_loss"]
    with pytest.raises(WorkflowError):
        validate(params, str(PROJECT / "workflow/schemas/params.schema.yaml"))


def test_stage_fingerprint_changes_only_with_the_stage_keys(params):
    validated = validate_params(params)
    before = {stage: stage_fingerprint(validated, stage) for stage in STAGE_PARAMS}
    changed = copy.deepcopy(validated)
    changed["preprocess"]["train_size"] = 1000
    after = {stage: stage_fingerprint(changed, stage) for stage in STAGE_PARAMS}
    assert {stage for stage in STAGE_PARAMS if before[stage] != after[stage]} == {"preprocess"}


def test_an_old_data_section_is_refused_naming_where_each_key_went(params):
    """params.yaml's `data:` section was split into `download:` and `preprocess:`. Read beside
    them it could disagree with them silently (issue 20, D6: `data.source: A` beside
    `download.source: B` downloaded A while dvc.lock recorded B), so it is refused."""
    old = copy.deepcopy(params)
    old["data"] = {**old.pop("download"), **old.pop("preprocess")}
    with pytest.raises(ParamsError) as error:
        validate_params(old)
    message = str(error.value)
    assert "`data:` section, which is no longer read" in message
    assert "data.source -> download.source" in message
    assert "data.train_size -> preprocess.train_size" in message
    assert "then delete `data:`" in message

    # Beside the new sections, even one key that agrees is refused: never one picked quietly.
    both = copy.deepcopy(params)
    both["data"] = {"source": "elsewhere.tar.gz"}
    with pytest.raises(ParamsError, match=r"Move data.source -> download.source"):
        validate_params(both)
    both["data"] = {"resolution": 32}
    with pytest.raises(ParamsError, match=r"data.resolution belong to neither"):
        validate_params(both)


def _float_keys(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _float_keys(item, (*path, key))
    elif isinstance(value, float):
        yield path


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_every_float_key_refuses_nan_and_infinity(bad):
    from lossbench.pipeline.params import ParamsError, load_params, validate_params

    params = load_params(PROJECT / "params.yaml")
    keys = list(_float_keys(params))
    assert len(keys) >= 10  # learning rate, decay, momentum, shift, shares, levels, ...
    for path in keys:
        broken = copy.deepcopy(params)
        target = broken
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = bad
        with pytest.raises(ParamsError, match="must be finite"):
            validate_params(broken)


def test_a_misspelt_loss_or_key_gets_a_did_you_mean():
    from lossbench.pipeline.params import ParamsError, load_params, validate_params

    params = load_params(PROJECT / "params.yaml")
    params["train"]["losses"] = ["squared_hinje"]
    with pytest.raises(ParamsError, match=r"Did you mean 'squared_hinge'\?"):
        validate_params(params)
    params = load_params(PROJECT / "params.yaml")
    params["train"]["learning_rte"] = 0.1
    with pytest.raises(ParamsError, match=r"unknown key train.learning_rte.*Did you mean 'learning_rate'\?"):
        validate_params(params)


def one_stage_dvc_project(root: Path, params_text: str, stage: str):
    """A git + DVC repository at `root` holding `params_text` as params.yaml and the one-stage
    dvc.yaml `stage` (YAML text of one stage under `stages:`), committed; returns a function
    that runs a command there (DVC from this virtual environment as `dvc`)."""
    import subprocess
    import sys

    dvc = str(Path(sys.executable).parent / "dvc")

    def run(*command):
        command = [dvc, *command[1:]] if command[0] == "dvc" else list(command)
        return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=120)

    (root / "params.yaml").write_text(params_text)
    (root / "dvc.yaml").write_text("stages:\n" + stage)
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"]):
        assert run(*command).returncode == 0, command
    return run


def test_exp_run_needs_no_plus_and_refuses_a_misspelt_key_before_changing_anything(tmp_path):
    """Issue 20, D11: `dvc exp run -S +train.epoch=3` rewrote params.yaml and deleted outputs
    before lossbench could refuse the key. Every key lossbench reads is in params.yaml, so
    `-S key=value` (no `+`) is enough, and DVC refuses a misspelt key before it writes; the
    README says so and how to undo a `+`."""
    from lossbench.pipeline.params import load_schema

    shipped = yaml.safe_load((PROJECT / "params.yaml").read_text())
    schema = load_schema()["properties"]
    assert [f"{section}.{key}" for section, sub in schema.items()
            for key in sub.get("properties", {}) if key not in shipped.get(section, {})] == []
    readme = " ".join((PROJECT / "README.md").read_text().split())
    assert "`dvc exp run -S`: never `+key`." in readme and "git checkout params.yaml" in readme

    run = one_stage_dvc_project(
        tmp_path, "train:\n  epochs: 2\n",
        "  make:\n    cmd: echo made > out.txt\n    params: [train.epochs]\n    outs: [out.txt]\n")
    result = run("dvc", "exp", "run", "-S", "train.epoch=3")

    assert result.returncode != 0
    assert "Key 'epoch' is not in struct" in result.stdout + result.stderr
    assert (tmp_path / "params.yaml").read_text() == "train:\n  epochs: 2\n"
    assert not (tmp_path / "out.txt").exists()


def test_what_exp_run_s_does_to_params_yaml_is_what_the_readme_says(tmp_path):
    """Issue 19: the README said an experiment leaves params.yaml as it was; DVC writes the -S
    values into it, also when the run fails, and rewrites the file. The README now says so,
    and offers `--temp` (and the queue), which leave it byte for byte, even when the run
    fails. A one-stage project with the shipped params.yaml whose stage fails stands in for
    the study's first stage failing (as a missing download.source makes it)."""
    readme = " ".join((PROJECT / "README.md").read_text().split())
    for claim in ("**`dvc exp run -S` writes them into `params.yaml`** before it runs and leaves "
                  "them there, also when the run fails.",
                  "every `null` becomes an empty value (`md5:`), bracketed lists one item per line, "
                  "and the comments after the lists `train.losses` and `compare.primary_pairs` are "
                  "dropped", "`git checkout params.yaml` puts the shipped file back",
                  "add `--temp` (`dvc exp run --temp -S ...`)", "even a failed run leaves the "
                  "workspace alone", "where a key is given twice, the last value counts"):
        assert claim in readme, claim

    shipped = (PROJECT / "params.yaml").read_text()
    run = one_stage_dvc_project(
        tmp_path, shipped, "  download:\n    cmd: exit 3\n"
        "    params: [download.source, download.md5, train.epochs]\n    outs: [archive]\n")
    settings = ["-S", "download.source=/nonexistent/archive.tar.gz", "-S", "download.md5=null",
                "-S", "train.epochs=3", "-S", "train.epochs=1"]

    for form in (["--temp"], ["--queue"]):
        result = run("dvc", "exp", "run", *form, *settings)
        assert result.returncode != 0 or form == ["--queue"], result.stderr
        assert (tmp_path / "params.yaml").read_text() == shipped, form
    assert run("dvc", "exp", "run", *settings).returncode != 0  # the stage fails

    written = (tmp_path / "params.yaml").read_text()
    expected = yaml.safe_load(shipped)
    expected["download"].update(source="/nonexistent/archive.tar.gz", md5=None)
    expected["train"]["epochs"] = 1  # the last of the two
    assert yaml.safe_load(written) == expected
    assert "\n  md5:\n" in written and "\n  sha256:\n" in written  # null written as empty
    assert "[0.003, 0.01" in shipped and "[0.003, 0.01" not in written
    for comment in ("# Random seeds (integers); each seeds weights",
                    "# Equivalence margin of the paired TOST"):
        assert comment in shipped and comment not in written, comment


def test_issue_31_inputs_that_passed_silently_are_refused_naming_the_key_and_the_fix(tmp_path, params,
                                                                                     monkeypatch):
    """Issue 31, items 5 and 6: a key given twice, whole numbers written with a decimal point,
    an exponent YAML 1.1 reads as text, a seed past 2^32 - 1 in tune.seeds, a misspelt loss in
    compare.primary_pairs, and a leftover LOSSBENCH_DAG_PARAMS."""
    text = (PROJECT / "params.yaml").read_text()
    twice = tmp_path / "twice.yaml"
    twice.write_text(text.replace("  epochs: 100\n", "  epochs: 100\n  epochs: 3\n", 1))
    with pytest.raises(ParamsError, match=r"line \d+, column 3: the key 'epochs' is given twice in one section"):
        load_params(twice)
    doubled = tmp_path / "doubled.yaml"
    doubled.write_text(text + "\nmodel:\n  width: 0.5\n")
    with pytest.raises(ParamsError, match="the key 'model' is given twice"):
        load_params(doubled)

    def refused(section: str, key: str, value) -> str:
        bad = copy.deepcopy(params)
        bad[section][key] = value
        with pytest.raises(ParamsError) as error:
            validate_params(bad)
        return str(error.value)

    assert "train.epochs is 2.0 (float); expected integer. Write a whole number without the " \
           "decimal point: 2." in refused("train", "epochs", 2.0)
    assert "train.seeds[0] is 0.0 (float); expected integer." in refused("train", "seeds", [0.0])
    assert "Write a whole number without the decimal point: 4." in refused("train", "steps_per_execution", 4.0)
    hand_written = refused("train", "learning_rate", "1e-3")
    assert "train.learning_rate" in hand_written and "YAML reads '1e-3' as text" in hand_written
    assert "(1.0e-3, not 1e-3), or write it plainly (0.001)" in hand_written
    assert "tune.seeds[0] is 1099511627776; it must be <= 4294967295." in refused("tune", "seeds", [2 ** 40])
    misspelt = refused("compare", "primary_pairs", [["categorical_crossentropy", "hnge"]])
    assert "compare.primary_pairs[0][1] is 'hnge'" in misspelt and "Did you mean 'hinge'?" in misspelt

    from lossbench.pipeline.params import DAG_DIGEST_VARIABLE, check_dag_params

    monkeypatch.setenv(DAG_DIGEST_VARIABLE, "left over from an earlier Snakemake run")
    with pytest.raises(ParamsError, match=f"`unset {DAG_DIGEST_VARIABLE}`"):
        check_dag_params(validate_params(copy.deepcopy(params)))


def test_a_stage_fails_when_its_values_change_while_it_runs(tmp_path, monkeypatch, capsys):
    """Issue 31, item 1: `dvc exp run -S train.epochs=3` (refused for the lock, but having
    rewritten params.yaml) or a hand edit during `dvc repro` changed the values a running stage
    had read; DVC then recorded the new values beside outputs made with the old ones. Now the
    stage fails, naming the keys, so no lock records them; a change to keys it does not read
    leaves it alone."""
    from lossbench import cli

    path = tmp_path / "params.yaml"
    path.write_text((PROJECT / "params.yaml").read_text())

    def edit(section: str, key: str, value):
        def handler(args, params):
            changed = yaml.safe_load(path.read_text())
            changed[section][key] = value
            path.write_text(yaml.safe_dump(changed))
        return handler

    monkeypatch.setattr(cli, "_compare", edit("compare", "confidence_level", 0.9))
    command = ["--params", str(path), "compare", "--evaluations", str(tmp_path), "--output",
               str(tmp_path / "summary.json"), "--headline", str(tmp_path / "headline.json")]
    assert cli.main(command) == 2
    error = capsys.readouterr().err
    assert "changed while `lossbench compare` ran (compare.confidence_level)" in error
    assert "the stage fails rather than let DVC record the new ones" in error
    monkeypatch.setattr(cli, "_compare", edit("train", "decay", 0.0))  # not a key compare reads
    assert cli.main(command) == 0


# ---------------------------------------------------------------------------------------------
# `lossbench use-params`: the committed configurations of workflow/params/, for both tools.
# ---------------------------------------------------------------------------------------------


def comment_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("#")]


def test_use_params_puts_the_values_in_and_keeps_every_comment(tmp_path, params):
    from lossbench.cli import main

    shipped = (PROJECT / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(shipped)
    overlays = [str(PROJECT / "workflow/params" / name) for name in ("cpu-smoke.yaml", "local-copy.yaml")]
    assert main(["--params", str(tmp_path / "params.yaml"), "use-params", *overlays]) == 0
    text = (tmp_path / "params.yaml").read_text()
    assert comment_lines(text) == comment_lines(shipped)
    expected = copy.deepcopy(params)
    for overlay in overlays:
        for section, keys in yaml.safe_load(Path(overlay).read_text()).items():
            expected[section].update(keys)
    assert load_params(tmp_path / "params.yaml") == expected
    # Only the overlays' lines changed: the file is the shipped one elsewhere, line by line.
    import difflib

    removed = [line for line in difflib.ndiff(shipped.splitlines(), text.splitlines())
               if line.startswith("- ")]
    assert all(re.match(r"- +(\w+: |- \w+$)", line) for line in removed), removed
    assert len(removed) == 12  # 9 one-line values, and 3 of the 6 losses
    # Applying the same again changes nothing.
    assert main(["--params", str(tmp_path / "params.yaml"), "use-params", *overlays]) == 0
    assert (tmp_path / "params.yaml").read_text() == text


@pytest.mark.parametrize("overlay, message", [
    ("train:\n  epochz: 3\n", "no key train.epochz in params.yaml"),
    ("trian:\n  epochs: 3\n", "no section 'trian' in params.yaml"),
    ("train: 3\n", "must hold `section: {key: value}` mappings"),
    ("train:\n  epochs: three\n", "train.epochs"),
    ("train:\n  epochs: 3\n  epochs: 4\n", "given twice"),
])
def test_use_params_refuses_a_bad_overlay_and_leaves_params_yaml_alone(tmp_path, overlay, message, capsys):
    from lossbench.cli import main

    shipped = (PROJECT / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(shipped)
    (tmp_path / "bad.yaml").write_text(overlay)
    assert main(["--params", str(tmp_path / "params.yaml"), "use-params", str(tmp_path / "bad.yaml")]) == 2
    assert message in capsys.readouterr().err
    assert (tmp_path / "params.yaml").read_text() == shipped
    assert main(["--params", str(tmp_path / "params.yaml"), "use-params", str(tmp_path / "absent.yaml")]) == 2
    assert "absent.yaml not found" in capsys.readouterr().err


def test_validate_writes_the_gate_file_only_for_valid_params(tmp_path, capsys):
    """DVC's first stage (lossbench.pipeline.params_gate): the same text for any valid
    params.yaml, nothing for a bad one."""
    from lossbench.cli import main
    from lossbench.pipeline.params_gate import GATE_TEXT

    (tmp_path / "params.yaml").write_text((PROJECT / "params.yaml").read_text())
    gate = tmp_path / "data" / "params-valid.txt"
    assert main(["--params", str(tmp_path / "params.yaml"), "validate", "--output", str(gate)]) == 0
    assert gate.read_text() == GATE_TEXT
    gate.unlink()
    bad = (PROJECT / "params.yaml").read_text().replace("  epochs: 100\n", "  epochs: three\n")
    (tmp_path / "params.yaml").write_text(bad)
    assert main(["--params", str(tmp_path / "params.yaml"), "validate", "--output", str(gate)]) == 2
    assert "train.epochs" in capsys.readouterr().err and not gate.exists()


@pytest.mark.parametrize("overlay", sorted((PROJECT / "reports/studies").glob("*/overlay-*.yaml")) +
                         sorted((PROJECT / "workflow/params").glob("*.yaml")), ids=lambda path: path.name)
def test_every_committed_overlay_makes_a_valid_params_yaml(tmp_path, overlay):
    from lossbench.pipeline.params_overlay import use_params

    (tmp_path / "params.yaml").write_text((PROJECT / "params.yaml").read_text())
    assert use_params(tmp_path / "params.yaml", [overlay])
    load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize("setting, named", [
    ("+train.newkey=1", "newkey"),             # D11: a `+key` DVC writes without a word
    ("+data.train_size=10", "data"),           # D6: a leftover `data:` section
    ("train.epochs=three", "train.epochs"),    # issue 32: a bad value
])
def test_dvcs_first_stage_refuses_what_lossbench_would_before_any_output_goes(tmp_path, setting, named):
    """dvc.yaml's `validate` stage (lossbench.pipeline.params_gate), on which every stage
    depends: `dvc exp run -S` with a key or value lossbench refuses stops there, naming it,
    and the next stage's output stays."""
    import shutil
    import sys

    import yaml as yaml_module

    from lossbench.pipeline.params_gate import gate_stage

    shutil.copytree(PROJECT / "workflow/schemas", tmp_path / "workflow/schemas")
    gate = {"validate": gate_stage(),
            "make": {"cmd": "echo made > out.txt", "deps": ["data/params-valid.txt"],
                     "params": ["train.epochs"], "outs": ["out.txt"]}}
    gate["validate"]["cmd"] = f"{Path(sys.executable).parent / 'lossbench'} validate --output data/params-valid.txt"
    stages = yaml_module.safe_dump(gate, sort_keys=False)
    run = one_stage_dvc_project(tmp_path, (PROJECT / "params.yaml").read_text(),
                                "".join(f"  {line}\n" for line in stages.splitlines()))
    assert run("dvc", "repro").returncode == 0
    assert (tmp_path / "out.txt").read_text() == "made\n"
    result = run("dvc", "exp", "run", "-S", setting)
    assert result.returncode != 0
    assert "lossbench validate: error" in result.stdout + result.stderr and named in result.stdout + result.stderr
    assert (tmp_path / "out.txt").read_text() == "made\n"

"""The README's two commands, CI and the conda environment stay in step with the project."""

import re
import tomllib
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (PROJECT / "README.md").read_text()
    return [line.strip() for line in text.split("---")[0].splitlines() if line.startswith("    ")]


def readme_block_after(marker: str) -> str:
    """The first line of the first ```bash block after `marker` in README.md."""
    text = (PROJECT / "README.md").read_text()
    return text[text.index(marker):].split("```bash\n", 1)[1].splitlines()[0]


def readme_table_commands() -> dict[tuple[str, str], str]:
    """The first screen's table: {(row, tool): command}, tool "Snakemake" or "DVC"."""
    text = (PROJECT / "README.md").read_text()
    table = text[text.index("| | Snakemake | DVC |"):].split("\n\n", 1)[0].splitlines()[2:]
    commands = {}
    for row in table:
        name, snakemake, dvc = (cell.strip() for cell in row.strip("|").split("|"))
        commands[(name, "Snakemake")], commands[(name, "DVC")] = snakemake.strip("`"), dvc.strip("`")
    return commands


OFFLINE = "offline, from `../shared/data/cifar10-jpeg.tar.gz`"


def settings(command: str) -> list[tuple[str, str]]:
    """The (key, value) of each `-S key=value` of a `dvc exp run` command, in order."""
    import shlex

    words = shlex.split(command)
    assert words[:3] == ["dvc", "exp", "run"], command
    pairs = [words[index + 1].split("=", 1) for index, word in enumerate(words) if word == "-S"]
    assert 2 * len(pairs) == len(words) - 3, command  # nothing but -S settings
    return [(key, value) for key, value in pairs]


def test_readme_starts_with_install_and_run_commands():
    pipeline, tests = readme_commands()
    assert pipeline.startswith("python3 -m venv .venv") and pipeline.endswith(
        "snakemake --cores 1 --resources gpu=1"
    )
    assert tests.startswith("python3 -m venv .venv") and "pytest" in tests


def test_ci_runs_the_readme_test_command():
    _, tests = readme_commands()
    ci_lines = [line.strip() for line in (PROJECT / ".ci/run").read_text().splitlines()]
    assert tests in ci_lines


def pyproject_pins(extras: tuple[str, ...] = ("test", "slurm")) -> dict[str, str]:
    """{name: version} of pyproject.toml's dependencies and of those its `extras` add (by
    default what the README's test command installs, `pip install -e ".[test,slurm]"`)."""
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    pins = {}
    for requirement in requirements:
        name, version = re.match(r"([A-Za-z0-9_.\[\]-]+)==([^;\s]+)", requirement).groups()
        pins[name] = version
    return pins


def test_conda_environment_has_the_same_pins_as_pyproject():
    """pyproject.toml is the one source of the pins: environment.yml holds exactly those of
    `pip install -e ".[test,slurm]"`, and the editable install."""
    environment = yaml.safe_load((PROJECT / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict))
    conda_pins = dict(line.split("==") for line in pip_section if "==" in line)
    assert conda_pins == pyproject_pins()
    assert [line for line in pip_section if "==" not in line] == ["-e ."]


def test_the_slurm_plugins_are_an_extra_that_the_tests_install():
    """Snakemake imports every installed executor plugin at each start: the SLURM one only
    where asked for (`.[slurm]`): by the README's test command for tests/test_slurm.py (run
    in CI), never by another extra."""
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert not [name for name in project["dependencies"] if name.startswith("snakemake-executor-plugin")]
    assert {name.split("==")[0] for name in extras["slurm"]} == {
        "snakemake-executor-plugin-slurm", "snakemake-executor-plugin-slurm-jobstep"}
    assert not any("slurm" in requirement for name, required in extras.items() if name != "slurm"
                   for requirement in required)
    assert '.[test,slurm]' in readme_commands()[1]
    readme = (PROJECT / "README.md").read_text()
    assert 'pip install -e ".[slurm]"' in readme
    assert '.[slurm]' in (PROJECT / "workflow/profiles/slurm/config.yaml").read_text()


def test_gpu_extra_and_gpu_environment_agree():
    """`pip install -e ".[gpu]"` and environment-gpu.yml bring the measured GPU path, JAX's CUDA
    build (KERAS_BACKEND=jax), and the GPU environment is the CPU one with only JAX's line
    changed; TensorFlow's CUDA build is an extra of its own."""
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    (gpu,) = extras["gpu"]
    assert gpu.split(";")[0].strip() == "jax[cuda12]==0.10.2"
    assert extras["gpu-tensorflow"][0].split(";")[0].strip() == "tensorflow[and-cuda]==2.21.0"
    assert "jax[cpu]==0.10.2" in extras["test"]

    def environment(name):
        return yaml.safe_load((PROJECT / name).read_text())

    def pip_lines(name):
        return next(item["pip"] for item in environment(name)["dependencies"] if isinstance(item, dict))

    cpu, gpu_lines = pip_lines("environment.yml"), pip_lines("environment-gpu.yml")
    assert "jax[cuda12]==0.10.2" in gpu_lines and environment("environment-gpu.yml")["variables"] == {
        "KERAS_BACKEND": "jax"}
    assert [line for line in gpu_lines if not line.startswith("jax")] == [
        line for line in cpu if not line.startswith("jax")]


def test_rule_environment_holds_only_what_the_rules_run():
    """The rules' environment (`--sdm conda`) is pyproject.toml's dependencies at their pins:
    no test tools, no SLURM plugins, and no relative path (Snakemake copies the file into
    .snakemake/conda/, where environment.yml's `-e .` would name that directory); its
    post-deploy script (run from the project root) installs the package."""
    project_environment = yaml.safe_load((PROJECT / "environment.yml").read_text())
    rule_environment = yaml.safe_load((PROJECT / "workflow/envs/lossbench.yaml").read_text())
    rule_pip = next(item["pip"] for item in rule_environment["dependencies"] if isinstance(item, dict))
    assert dict(line.split("==") for line in rule_pip) == pyproject_pins(extras=())
    assert [item for item in rule_environment["dependencies"] if not isinstance(item, dict)] == [
        item for item in project_environment["dependencies"] if not isinstance(item, dict)
    ]
    post_deploy = (PROJECT / "workflow/envs/lossbench.post-deploy.sh").read_text()
    assert "pip install --no-deps -e ." in post_deploy
    rules = (PROJECT / "workflow/rules/common.smk").read_text()
    assert 'ENVIRONMENT = "../envs/lossbench.yaml"' in rules


def test_license_is_mit():
    text = (PROJECT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 lossbench developers" in text


def test_readme_explains_conda_and_the_quick_test_run():
    text = (PROJECT / "README.md").read_text()
    assert "conda env create -f environment.yml" in text
    assert '-m "not slow"' in text


def test_the_first_screen_runs_the_smoke_test_the_same_way_under_both_tools():
    """Issue 32: the first command is the smoke test; the table gives it under both tools, and
    offline with the local copy's overlay, whose four settings are those a local copy needs
    (download.error names the same four), with the copy's SHA-256; each overlay is valid."""
    from lossbench.pipeline.params import load_params, validate_params
    from projects import SHARED_SHA256

    run_command, _ = readme_commands()
    commands = readme_table_commands()
    smoke = "lossbench use-params workflow/params/cpu-smoke.yaml"
    tail = {"Snakemake": " && snakemake --cores 1 --resources gpu=1", "DVC": " && dvc exp run"}
    assert run_command.endswith(smoke + tail["Snakemake"])
    for tool, end in tail.items():
        assert commands[("smoke test", tool)] == smoke + end
        assert commands[(OFFLINE, tool)] == smoke + " workflow/params/local-copy.yaml" + end
    local = yaml.safe_load((PROJECT / "workflow/params/local-copy.yaml").read_text())
    assert local == {"download": {"source": "../shared/data/cifar10-jpeg.tar.gz", "md5": None,
                                  "sha256": SHARED_SHA256},
                     "preprocess": {"dataset": "image_folder"}}
    smoke_values = yaml.safe_load((PROJECT / "workflow/params/cpu-smoke.yaml").read_text())
    assert smoke_values["tune"] == {"learning_rates": []}  # no tuning: minutes, not hours
    params = load_params(PROJECT / "params.yaml")
    for overlay in (smoke_values, local):
        for section, keys in overlay.items():
            params[section].update(keys)
    validate_params(params)

"""The README's two commands, CI and the conda environment stay in step with the project."""

import re
import tomllib
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (PROJECT / "README.md").read_text()
    return [line.strip() for line in text.split("---")[0].splitlines() if line.startswith("    ")]


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


def test_conda_environment_has_the_same_pins_as_pyproject():
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    pins = {}
    for requirement in project["dependencies"] + project["optional-dependencies"]["test"]:
        name, version = re.match(r"([A-Za-z0-9_.\[\]-]+)==([^;\s]+)", requirement).groups()
        pins[name] = version
    environment = yaml.safe_load((PROJECT / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict))
    conda_pins = dict(line.split("==") for line in pip_section if "==" in line)
    assert conda_pins.get("tensorflow") == pins["tensorflow"]
    for name, version in pins.items():
        if name.startswith("tensorflow"):
            continue
        assert conda_pins.get(name) == version, name


def test_gpu_extra_and_gpu_environment_agree():
    """`pip install -e ".[gpu]"` and environment-gpu.yml bring the same CUDA TensorFlow, and
    the GPU environment is the CPU one with only TensorFlow's line changed."""
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    (gpu,) = project["optional-dependencies"]["gpu"]
    assert gpu.split(";")[0].strip() == "tensorflow[and-cuda]==2.21.0"
    assert "tensorflow==2.21.0" in project["dependencies"]

    def pip_lines(name):
        environment = yaml.safe_load((PROJECT / name).read_text())
        return next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict))

    cpu, gpu_lines = pip_lines("environment.yml"), pip_lines("environment-gpu.yml")
    assert "tensorflow[and-cuda]==2.21.0" in gpu_lines
    assert [line for line in gpu_lines if not line.startswith("tensorflow")] == [
        line for line in cpu if not line.startswith("tensorflow")]

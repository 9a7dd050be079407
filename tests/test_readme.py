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
    assert conda_pins.get("tensorflow-cpu") == pins["tensorflow-cpu"]
    for name, version in pins.items():
        if name.startswith("tensorflow"):
            continue
        assert conda_pins.get(name) == version, name

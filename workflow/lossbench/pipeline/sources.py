"""Which source files a stage runs: its module and every lossbench module it imports.

In:  a module of the package, named relative to it with dots ("train", "train.tune",
     "core.losses"; "__init__" for the package's own __init__.py), or a stage's name.
Out: the module's import closure within lossbench (found by reading the sources, imports
     inside functions included), as names, as project-relative paths (what Snakemake's rules
     and dvc.yaml list as a stage's code dependencies; a test checks dvc.yaml) and as one
     SHA-256 digest (what a training checkpoint records, so that no code change is ever
     resumed by a run that older code began).

Read from the code rather than kept by hand, so a stage that starts to import another module
depends on it at once. The command-line front end (cli.py) is left out: it only dispatches,
and what it passes is in each stage's command.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
# Relative to the project root, as dvc.yaml and the Snakemake rules spell paths.
PACKAGE_PATH = "workflow/lossbench"
FRONT_END = "cli"
# Stages whose module lives in another stage's folder: tuning is training at several learning
# rates, so the tune stage is train/tune.py, beside the training loop it runs.
HOSTED_STAGES = {"tune": "train"}


def module_file(module: str, package_dir: Path | None = None) -> Path | None:
    """The file of `module` (a package's is its __init__.py), or None if there is none."""
    base = package_dir or PACKAGE_DIR
    if module == "__init__":
        return base / "__init__.py"
    path = base.joinpath(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def stage_module(stage: str) -> str:
    """The module a stage runs: its folder's package ("train"), a hosted stage's module in its
    host's folder ("train.tune"), or a module on top ("bench")."""
    module = f"{HOSTED_STAGES[stage]}.{stage}" if stage in HOSTED_STAGES else stage
    if module_file(module) is None:
        raise ValueError(f"lossbench has no module for the stage {stage!r} ({PACKAGE_DIR}).")
    return module


def _absolute(node: ast.ImportFrom, module: str, package_dir: Path) -> str | None:
    """The dotted name, inside lossbench, that `node` imports from ("" for lossbench itself),
    or None when it is outside lossbench. Relative imports count from `module`'s package."""
    if node.level == 0:
        name = node.module or ""
        if name == "lossbench":
            return ""
        return name.removeprefix("lossbench.") if name.startswith("lossbench.") else None
    is_package = module != "__init__" and module_file(module, package_dir).name == "__init__.py"
    parts = [] if module == "__init__" else module.split(".")
    package = parts if is_package else parts[:-1]
    if node.level - 1 > len(package):
        raise ValueError(f"{module}: a relative import reaches above lossbench.")
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def direct_imports(module: str, package_dir: Path | None = None) -> set[str]:
    """The lossbench modules `module` imports itself, at module level or inside functions.

    `from P import name` counts the module P.name where there is one, else P itself (which
    provides `name`); `import lossbench.a.b` counts a.b. The package's own __init__.py is
    "__init__" (`from lossbench import __version__`). The front end (cli) is included here and
    left out of closures.
    """
    base = package_dir or PACKAGE_DIR
    tree = ast.parse(module_file(module, base).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _absolute(node, module, base)
            if source is None:
                continue
            for alias in node.names:
                candidate = f"{source}.{alias.name}" if source else alias.name
                if module_file(candidate, base) is not None:
                    names.add(candidate)
                else:
                    names.add(source or "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "lossbench":
                    names.add("__init__")
                elif alias.name.startswith("lossbench."):
                    names.add(alias.name.removeprefix("lossbench."))
    return names


@lru_cache(maxsize=None)
def module_closure(module: str) -> tuple[str, ...]:
    """`module` and every lossbench module it imports, directly or not, sorted by name."""
    if module_file(module) is None:
        raise ValueError(f"lossbench has no module {module!r} ({PACKAGE_DIR}).")
    seen, pending = set(), [module]
    while pending:
        name = pending.pop()
        if name not in seen:
            seen.add(name)
            pending.extend(direct_imports(name) - seen - {FRONT_END})
    return tuple(sorted(seen))


def _relative(module: str) -> str:
    return module_file(module).relative_to(PACKAGE_DIR).as_posix()


def source_paths(stage: str) -> list[str]:
    """The closure's files of `stage`'s module, relative to the project root
    (workflow/lossbench/<folder>/<name>.py), sorted."""
    modules = module_closure(stage_module(stage))
    return sorted(f"{PACKAGE_PATH}/{_relative(name)}" for name in modules)


def source_digest(stage: str) -> str:
    """A SHA-256 over the file names and contents of `source_paths(stage)`."""
    digest = hashlib.sha256()
    for name in sorted(module_closure(stage_module(stage)), key=_relative):
        digest.update(_relative(name).encode() + b"\0")
        digest.update(module_file(name).read_bytes() + b"\0")
    return digest.hexdigest()

"""Which source files decide a stage's results: its folder and the shared code it uses.

In:  a stage's name ("train"), or a module of the package named relative to it with dots
     ("train", "train.tune", "core.losses"; "__init__" for the package's own __init__.py).
Out: the stage's code dependencies, as DVC lists them (`code_dependencies`: the files of the
     stage's folder it runs, then the shared files), the same files for the Snakemake rules
     (`code_files`), and what `source_digest` hashes (the
     fingerprint a training checkpoint records so that no code change is ever resumed by a
     run that older code began), and the import reader these are built on.

The rule, and why:

- A stage depends on the files Python runs when the stage runs, found by reading the source:
  its entry module, every lossbench module that imports (at module level or inside a
  function, followed module by module), and the package __init__.py of each (Python runs it
  on the way to a submodule). A file of the stage's folder that nothing of this imports is no
  dependency: train does not rerun when tune.py changes, as training never runs it, while tune
  depends on the training loop it calls. So a whitespace change to a file a stage does not
  run leaves its outputs current under both tools (tests/test_workflow.py).
- Shared code counts the same way: for train and tune the model, losses, augmentation and
  batch order (core/) and the prepared arrays and whole-file writes they read and write with
  (io/prepared.py, io/atomic.py); evaluate adds io/review.py, the numbers of its review file,
  and io/evaluation.py. figures does not retrain when augment.py changes (its input, the
  evaluations, changes when it matters).
- Never a dependency: `pipeline/` (the stage table, params.yaml's loader and key lists, run
  names, this module, the lock, the command line's signal and log handling), the package's
  __init__.py (`__version__`) and cli.py. They say which stage runs with which files and
  keys, not what a stage computes; the params a stage reads are DVC params and Snakemake
  rule params of their own. So bumping the version or rewording params.py retrains nothing.
  The imports a stage takes from them are a short list that a test keeps
  (tests/test_architecture.py), so that result-deciding code cannot slip in there unseen.

Files, never folders: Snakemake judges a directory input by the directory's own modification
time, which editing a file inside does not change (and Python writing __pycache__ there does),
and a folder would bring in its files that the stage does not run.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
# Relative to the project root, as dvc.yaml and the Snakemake rules spell paths.
PACKAGE_PATH = "workflow/lossbench"
# Shared folders: a stage depends on the modules of these it uses, file by file.
SHARED_FOLDERS = ("core", "io", "presentation")
# Describes or dispatches the pipeline, decides no result: never a code dependency.
NOT_CODE_FOLDER = "pipeline"
NOT_CODE_MODULES = ("__init__", "cli")
# Stages whose module lives in another stage's folder: tuning is training at several learning
# rates, so the tune stage is train/tune.py, beside the training loop it runs (a folder of its
# own would import train's, which no stage folder may). Dependencies follow imports, so this
# decides only where `lossbench tune` is found, not what reruns.
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


def stage_folders() -> tuple[str, ...]:
    """The package's stage folders: every folder but the shared ones and pipeline/."""
    shared = (*SHARED_FOLDERS, NOT_CODE_FOLDER)
    return tuple(sorted(path.name for path in PACKAGE_DIR.iterdir()
                        if (path / "__init__.py").is_file() and path.name not in shared))


def stage_module(stage: str) -> str:
    """The module a stage runs: its folder's package ("train"), a hosted stage's module in its
    host's folder ("train.tune"), or a module on top ("bench")."""
    module = f"{HOSTED_STAGES[stage]}.{stage}" if stage in HOSTED_STAGES else stage
    if module_file(module) is None:
        raise ValueError(f"lossbench has no module for the stage {stage!r} ({PACKAGE_DIR}).")
    return module


def folder_modules(folder: str, package_dir: Path | None = None) -> list[str]:
    """Every module of a folder of the package, named as `direct_imports` names them."""
    base = package_dir or PACKAGE_DIR
    names = (".".join(path.relative_to(base).with_suffix("").parts)
             for path in (base / folder).rglob("*.py"))
    return sorted(name.removesuffix(".__init__") for name in names)


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


def imported_names(module: str, package_dir: Path | None = None) -> set[tuple[str, str]]:
    """(lossbench module, name) for every import in `module`, at module level or inside
    functions: `from P import name` gives (P.name, "") where P.name is a module, else
    (P, name); `import lossbench.a.b` gives ("a.b", ""). The package's own __init__.py is
    "__init__" (`from lossbench import __version__` gives ("__init__", "__version__"))."""
    base = package_dir or PACKAGE_DIR
    found = set()
    for node in ast.walk(ast.parse(module_file(module, base).read_text())):
        if isinstance(node, ast.ImportFrom):
            source = _absolute(node, module, base)
            for alias in node.names if source is not None else ():
                candidate = f"{source}.{alias.name}" if source else alias.name
                if module_file(candidate, base) is not None:
                    found.add((candidate, ""))
                else:
                    found.add((source or "__init__", alias.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "lossbench":
                    found.add(("__init__", ""))
                elif alias.name.startswith("lossbench."):
                    found.add((alias.name.removeprefix("lossbench."), ""))
    return found


def direct_imports(module: str, package_dir: Path | None = None) -> set[str]:
    """The lossbench modules `module` imports itself (see `imported_names`)."""
    return {source for source, _ in imported_names(module, package_dir)}


def decides_no_result(module: str) -> bool:
    """Whether `module` only describes or dispatches the pipeline (see the module docstring)."""
    return module in NOT_CODE_MODULES or module.split(".")[0] == NOT_CODE_FOLDER


def _with_packages(module: str) -> list[str]:
    """`module` and the packages Python runs on the way to it ("train.tune" -> train/__init__.py
    too), top first; lossbench's own __init__.py decides nothing (see the module docstring)."""
    parts = module.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts) + 1)]


@lru_cache(maxsize=None)
def module_closure(stage: str) -> tuple[str, ...]:
    """Every module whose code decides `stage`'s results, sorted: its entry module, what that
    imports, directly or not, and their packages, less what decides nothing."""
    pending = _with_packages(stage_module(stage))
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen or decides_no_result(name):
            continue
        seen.add(name)
        for other in direct_imports(name):
            pending.extend(_with_packages(other))
    return tuple(sorted(seen))


def _relative(module: str) -> str:
    return module_file(module).relative_to(PACKAGE_DIR).as_posix()


def code_dependencies(stage: str) -> list[str]:
    """`stage`'s code files as dvc.yaml lists them, relative to the project root: those of its
    own folder first (workflow/lossbench/train/...), then the shared files it uses, sorted."""
    own = stage_module(stage).split(".")[0]
    files = code_files(stage)
    first = [path for path in files if path.startswith(f"{PACKAGE_PATH}/{own}/")]
    return first + [path for path in files if path not in first]


def code_files(stage: str) -> list[str]:
    """The files of `module_closure(stage)`, relative to the project root, sorted."""
    return sorted(f"{PACKAGE_PATH}/{_relative(name)}" for name in module_closure(stage))


def source_digest(stage: str) -> str:
    """A SHA-256 over the names and contents of `code_files(stage)`."""
    digest = hashlib.sha256()
    for name in sorted(module_closure(stage), key=_relative):
        digest.update(_relative(name).encode() + b"\0")
        digest.update(module_file(name).read_bytes() + b"\0")
    return digest.hexdigest()

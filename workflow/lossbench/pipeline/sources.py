"""Which source files decide a stage's results: its folder and the shared code it uses.

In:  a stage's name ("train"), or a module of the package named relative to it with dots
     ("train", "train.tune", "core.losses"; "__init__" for the package's own __init__.py).
Out: the stage's code dependencies, as DVC lists them (`code_dependencies`: the stage's
     folder as one path, then the shared files it uses), as the files behind them
     (`code_files`: what the Snakemake rules list and what `source_digest` hashes, the
     fingerprint a training checkpoint records so that no code change is ever resumed by a
     run that older code began), and the import reader these are built on.

The rule, and why:

- A stage depends on its whole folder: the folder is the stage (its command and its
  helpers), and a new helper there is a dependency without anyone listing it. The tune stage
  is a module of train/ (`HOSTED_STAGES`), so train and tune depend on the same folder: an
  edit to tune.py reruns training too, the price of keeping the training loop and its one
  other user in one place.
- Shared code counts file by file, where the stage's folder uses it (its imports, read from
  the source, followed through the shared modules): for train and tune the model, losses,
  augmentation and batch order (core/) and the prepared arrays and whole-file writes they
  read and write with (io/prepared.py, io/atomic.py); evaluate adds io/review.py, the
  numbers of its review file, and io/evaluation.py. A shared module a stage does not import
  is not its dependency: figures does not retrain when augment.py changes (its input, the
  evaluations, changes when it matters).
- Never a dependency: `pipeline/` (the stage table, params.yaml's loader and key lists, run
  names, this module, the lock, the command line's signal and log handling), the package's
  __init__.py (`__version__`) and cli.py. They say which stage runs with which files and
  keys, not what a stage computes; the params a stage reads are DVC params and Snakemake
  rule params of their own. So bumping the version or rewording params.py retrains nothing.
  The imports a stage takes from them are a short list that a test keeps
  (tests/test_architecture.py), so that result-deciding code cannot slip in there unseen.

Snakemake gets the files, not the folder: it judges a directory input by the directory's
own modification time, which editing a file inside does not change (and Python writing
__pycache__ there does). DVC hashes a folder's files, less what .dvcignore names
(__pycache__/).
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


def _unit(module: str) -> str:
    """What a stage depends on when it runs `module`: its stage folder ("train"), else its
    file ("core/losses.py")."""
    top = module.split(".")[0]
    if top in stage_folders():
        return top
    return _relative(module)


@lru_cache(maxsize=None)
def module_closure(stage: str) -> tuple[str, ...]:
    """Every module whose code decides `stage`'s results, sorted: the modules of its folder
    (or its module on top) and what they import, directly or not, less what decides nothing."""
    module = stage_module(stage)
    top = module.split(".")[0]
    pending = folder_modules(top) if top in stage_folders() else [module]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen or decides_no_result(name):
            continue
        seen.add(name)
        reached = direct_imports(name)
        for other in reached:
            other_top = other.split(".")[0]
            # A module of a stage folder brings the whole folder, as the folder is one unit.
            pending.extend(folder_modules(other_top) if other_top in stage_folders() else [other])
    return tuple(sorted(seen))


def _relative(module: str) -> str:
    return module_file(module).relative_to(PACKAGE_DIR).as_posix()


def code_dependencies(stage: str) -> list[str]:
    """`stage`'s code dependencies as DVC lists them, relative to the project root: its
    folder first (workflow/lossbench/train), then the shared files it uses, sorted."""
    units = {_unit(name) for name in module_closure(stage)}
    own = stage_module(stage).split(".")[0]
    first = [own] if own in units else []
    return [f"{PACKAGE_PATH}/{unit}" for unit in first + sorted(units - set(first))]


def code_files(stage: str) -> list[str]:
    """The files behind `code_dependencies(stage)`: each folder's .py files, sorted."""
    return sorted(f"{PACKAGE_PATH}/{_relative(name)}" for name in module_closure(stage))


def source_digest(stage: str) -> str:
    """A SHA-256 over the names and contents of `code_files(stage)`."""
    digest = hashlib.sha256()
    for name in sorted(module_closure(stage), key=_relative):
        digest.update(_relative(name).encode() + b"\0")
        digest.update(module_file(name).read_bytes() + b"\0")
    return digest.hexdigest()

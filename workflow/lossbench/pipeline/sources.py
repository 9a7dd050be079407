"""Which source files a stage runs: its module and every lossbench module it imports.

In:  a module name of the package ("train").
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

PACKAGE_DIR = Path(__file__).resolve().parent
# Relative to the project root, as dvc.yaml and the Snakemake rules spell paths.
PACKAGE_PATH = "workflow/lossbench"
FRONT_END = "cli"


def direct_imports(module: str) -> set[str]:
    """The lossbench modules `module` imports itself, at module level or inside functions.

    `from lossbench import name` counts as importing `name` (where it is a module) and the
    package's "__init__"; the front end (cli) is included here and left out of closures.
    """
    tree = ast.parse((PACKAGE_DIR / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "lossbench":
                names.update(alias.name for alias in node.names
                             if (PACKAGE_DIR / f"{alias.name}.py").is_file())
                names.add("__init__")
            elif node.module.startswith("lossbench."):
                names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "lossbench":
                    names.add("__init__")
                elif alias.name.startswith("lossbench."):
                    names.add(alias.name.split(".")[1])
    return names


@lru_cache(maxsize=None)
def module_closure(module: str) -> tuple[str, ...]:
    """`module` and every lossbench module it imports, directly or not, sorted by name."""
    if not (PACKAGE_DIR / f"{module}.py").is_file():
        raise ValueError(f"lossbench has no module {module!r} ({PACKAGE_DIR}).")
    seen, pending = set(), [module]
    while pending:
        name = pending.pop()
        if name not in seen:
            seen.add(name)
            pending.extend(direct_imports(name) - seen - {FRONT_END})
    return tuple(sorted(seen))


def source_paths(module: str) -> list[str]:
    """The closure's files, relative to the project root: workflow/lossbench/<name>.py."""
    return [f"{PACKAGE_PATH}/{name}.py" for name in module_closure(module)]


def source_digest(module: str) -> str:
    """A SHA-256 over the closure's file names and contents."""
    digest = hashlib.sha256()
    for name in module_closure(module):
        digest.update(f"{name}.py".encode() + b"\0")
        digest.update((PACKAGE_DIR / f"{name}.py").read_bytes() + b"\0")
    return digest.hexdigest()

"""The files `lossbench dvc-yaml` writes from the project's tables, and its check.

In:  the project root.
Out: `write_generated(root, check)`: dvc.yaml and benchmarks/dvc.yaml rendered from the stage
     table (`lossbench.pipeline.stages`), and the DVC plot templates (workflow/plots/*.json)
     with the loss colours of `lossbench.presentation.loss_colours`; with `check`, nothing is
     written and the stale files are named instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lossbench.io.atomic import write_text
from lossbench.pipeline.dvc_plots import PLOT_TEMPLATES, coloured_template
from lossbench.pipeline.dvc_yaml import DVC_FILES, render_dvc_yaml

GENERATED_FILES = (*DVC_FILES, *PLOT_TEMPLATES)


def render_generated(name: str, root: Path) -> str:
    """The text `name` (one of GENERATED_FILES) should have in the project at `root`: a DVC
    file rendered from the table, a template as it is with the registry's loss colours."""
    if name in DVC_FILES:
        return render_dvc_yaml(name)
    return coloured_template(Path(root, name).read_text())


def write_generated(root: Path, check: bool = False) -> int:
    """Write every generated file that differs from what it should be (or with `check` only
    say which differ); 0 when they were current or are now written, 1 when `check` found any
    stale."""
    stale = []
    for name in GENERATED_FILES:
        path, text = Path(root) / name, render_generated(name, root)
        if not path.is_file() or path.read_text() != text:
            stale.append(name)
            if not check:
                write_text(path, text)
    if check and stale:
        print(f"lossbench dvc-yaml: {', '.join(stale)} differ from the stage table "
              "(workflow/lossbench/pipeline/stages.py) or the loss colours "
              "(workflow/lossbench/presentation/loss_colours.py); run `lossbench dvc-yaml` to "
              "regenerate them.", file=sys.stderr)
        return 1
    print("lossbench dvc-yaml: " + ("up to date" if not stale else f"wrote {', '.join(stale)}"))
    return 0

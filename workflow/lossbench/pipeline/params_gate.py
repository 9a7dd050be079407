"""DVC's first stage, `validate`: params.yaml is checked before DVC deletes any output.

In:  params.yaml (already validated by `lossbench validate`, as by every stage).
Out: `GATE_FILE`, a file of constant text that `write_gate` writes, and `gate_stage()`, the
     stage of dvc.yaml that writes it.

Why: DVC deletes a stage's outputs just before it runs the stage, and each stage validates
params.yaml only when it starts; so `dvc exp run -S train.epochs=three` used to delete
reports/tune/*.json before `lossbench tune` refused the value. Snakemake validates params.yaml
while it parses the Snakefile, before any job; DVC has no such step. So dvc.yaml begins with
`validate`, on which every other stage depends: it reruns whenever params.yaml changes, stops
`dvc repro` on a bad value before anything is deleted, and writes the same text every time, so
that it never makes another stage stale by itself. The Snakefile writes the same file when it
is missing, so that `dvc commit` after a Snakemake run finds it. Git ignores it (.gitignore) and
DVC caches it like any output, so that `dvc pull` brings it back with the rest.
"""

from __future__ import annotations

from pathlib import Path

from lossbench.io.atomic import write_text

GATE_STAGE = "validate"
GATE_FILE = "data/params-valid.txt"
GATE_TEXT = ("params.yaml passed `lossbench validate` (workflow/schemas/params.schema.yaml); "
             "this text never changes, so that no stage reruns because of it.\n")
GATE_COMMENT = """
validate: checks params.yaml before DVC deletes any output (DVC deletes a stage's outputs just
before running it). It reruns whenever params.yaml changes and always writes the same text, so
it never makes another stage stale; every stage below depends on its file."""


def write_gate(path: str | Path = GATE_FILE) -> None:
    """Write the gate file (under a temporary name, then renamed) unless it already holds its
    text."""
    path = Path(path)
    if not path.is_file() or path.read_text() != GATE_TEXT:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, GATE_TEXT)


def gate_stage() -> dict:
    """The `validate` stage of dvc.yaml, as DVC reads it."""
    return {"cmd": f"lossbench validate --output {GATE_FILE}",
            "deps": ["params.yaml", "workflow/schemas/params.schema.yaml"],
            "outs": [GATE_FILE]}

"""The `plots:` section of dvc.yaml: what `dvc plots show` and `dvc plots diff` draw, in order.

In:  nothing (the curves are fixed: every one comes from one table, `reports/epochs.csv`,
     written by the figures stage, because DVC does not expand patterns over run directories).
Out: `plot_definitions` (the section's entries, as DVC reads them) and the comments that
     `lossbench.pipeline.dvc_yaml.dvc_document` puts before the section and before its PNG entry.

The order on DVC's page: DVC draws the Vega curves first, in the order listed here (each
loss's mean, then each run), and the PNG figures after them, sorted by folder and then by
name whatever this section lists; so the figures stage puts the comparison figures in
`reports/figures/` and those of one loss each in `reports/figures/per_loss/`, which sorts
after it. Axis titles are in words with units (DVC's `x_label` / `y_label`); the templates
(`workflow/plots/per_loss.json`, `per_run.json`) give whole-number epochs, y axes that fit
the data and, in `dvc plots diff`, a line style per revision (solid, dashed, ...) that
their legend "revision" draws beside each revision's name.
"""

from __future__ import annotations

import json

from lossbench.presentation.figure_style import EPOCH_LABEL, LOSS_UNIT
from lossbench.presentation.loss_colours import vega_colour_scale

PLOTS_COMMENT = """
`dvc plots show` / `dvc plots diff`, all from reports/epochs.csv (one row per loss, seed
and epoch). The templates (workflow/plots/*.json) draw one line per loss (the mean over
seeds, with a band of ±1 SD when there are several) or one line per run; across revisions
a line style, drawn beside each revision's name in the legend, tells them apart. DVC draws
these curves first and the PNG figures after them, by folder and name: the comparison
figures of reports/figures/ before those of each loss in reports/figures/per_loss/."""
FIGURES_COMMENT = "The PNG figures of the figures stage, shown as images."

# (title, column of reports/epochs.csv, y axis title, templates that draw it).
CURVES = (
    ("validation accuracy", "val_accuracy", "validation accuracy (fraction of images)", ("per_loss", "per_run")),
    ("validation loss", "val_loss", f"validation loss ({LOSS_UNIT})", ("per_loss",)),
    ("training accuracy", "train_accuracy", "training accuracy (fraction of images)", ("per_loss", "per_run")),
    ("training loss", "train_loss", f"training loss ({LOSS_UNIT})", ("per_loss",)),
)


# The Vega-Lite templates; their colour scale (one colour per loss, the figures' own) is
# written from lossbench.presentation.loss_colours by `lossbench dvc-yaml`, like dvc.yaml.
PLOT_TEMPLATES = ("workflow/plots/per_loss.json", "workflow/plots/per_run.json")


def coloured_template(text: str) -> str:
    """A template's JSON `text` with every colour encoding by loss given the registry's
    colour scale (`vega_colour_scale`); the rest of the template as it was."""
    template = json.loads(text)
    pending = [template]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            colour = node.get("color")
            if isinstance(colour, dict) and colour.get("field") == "loss":
                colour["scale"] = vega_colour_scale()
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return json.dumps(template, indent=2, ensure_ascii=False) + "\n"


def plot_definitions() -> list:
    """The `plots:` entries: the curves of each loss's mean, then of each run, then the PNGs."""
    curves = []
    for template in ("per_loss", "per_run"):
        what = "mean per loss" if template == "per_loss" else "each run"
        curves += [{f"{title} per epoch ({what})": {
            "template": f"workflow/plots/{template}.json", "x": "epoch",
            "y": {"reports/epochs.csv": column}, "x_label": EPOCH_LABEL, "y_label": y_label}}
            for title, column, y_label, templates in CURVES if template in templates]
    return [*curves, "reports/figures"]

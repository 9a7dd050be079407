"""One colour per loss, the same in every PNG figure, DVC plot and the Snakemake report.

In:  a loss name.
Out: `loss_colour(name)`, a hex colour: the registered one (`LOSS_COLOURS`, matplotlib's
     "tab10" colours in the order of `lossbench.core.losses.LOSSES`), or for a loss added
     without one, a colour drawn from the unused "tab20" shades by the name's own bytes, so a
     new loss is always drawn the same way; `vega_colour_scale()`, the same mapping as the
     colour scale of the DVC plot templates (`lossbench dvc-yaml` writes it into
     workflow/plots/*.json).

Why a table rather than the plotting library's colour cycle: a cycle colours by position, so
a loss changed colour between figures that drew different subsets of losses (hinge was red in
the per-loss figures and orange in the per-run one), and Vega sorts names alphabetically.
This module imports no Keras, so the figures and the DVC templates can use it cheaply.
"""

from __future__ import annotations

import hashlib

# tab10, in the registry's order; grey (#7f7f7f) is left to the "chance" line.
LOSS_COLOURS: dict[str, str] = {
    "categorical_crossentropy": "#1f77b4",
    "hinge": "#ff7f0e",
    "squared_hinge": "#2ca02c",
    "ova_hinge": "#d62728",
    "ova_squared_hinge": "#9467bd",
    "crammer_singer_hinge": "#8c564b",
    "square": "#e377c2",
    "mae": "#17becf",
    "generalized_cross_entropy": "#bcbd22",
}

# The light shades of tab20, none of which is in LOSS_COLOURS.
_SPARE_COLOURS = ("#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
                  "#dbdb8d", "#9edae5")


def loss_colour(name: str) -> str:
    """The colour of loss `name` (hex): its registered colour, else a stable spare one."""
    if name in LOSS_COLOURS:
        return LOSS_COLOURS[name]
    index = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")
    return _SPARE_COLOURS[index % len(_SPARE_COLOURS)]


def vega_colour_scale() -> dict[str, list[str]]:
    """The colour scale of the DVC plot templates: every registered loss and its colour."""
    return {"domain": list(LOSS_COLOURS), "range": list(LOSS_COLOURS.values())}

"""What a run's evaluation says about it beyond its numbers, read by evaluate and compare.

In:  one run's metrics, as `lossbench evaluate` writes them (reports/evaluation/<run>.json),
     possibly from before a key existed.
Out: `final_layer_dead`, whether the run's final conv layer is dead.

Shared by two stages and deciding a result (compare leaves dead runs out of a loss's accuracy
interval), so it sits with the file formats rather than in either stage or in the pipeline's
description (lossbench.pipeline, which no stage depends on as code).
"""

from __future__ import annotations


def final_layer_dead(metrics: dict) -> bool:
    """Whether a run's metrics say that its final conv layer (conv_9) is dead.

    `lossbench evaluate` writes `final_layer_dead`: at least `evaluate.dead_layer_share` of
    conv_9's activations on the test set are zero. Metrics written before that key existed
    (or holding null there) fall back to the older, stricter rule: every channel was zero on
    every test image. A run whose layer was not measured counts as alive.
    """
    if metrics.get("final_layer_dead") is not None:
        return bool(metrics["final_layer_dead"])
    channels = metrics.get("final_conv_channels")
    dead = metrics.get("final_conv_dead_channels")
    return channels is not None and dead is not None and channels > 0 and dead == channels

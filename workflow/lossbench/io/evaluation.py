"""What a run's evaluation says about it beyond its numbers, read by evaluate and compare.

In:  one run's metrics, as `lossbench evaluate` writes them (reports/evaluation/<run>.json),
     possibly from before a key existed.
Out: `final_layer_dead`, whether the run's final conv layer is dead.

Shared by two stages and deciding a result (compare leaves dead runs out of a loss's accuracy
interval), so it sits with the file formats rather than in either stage or in the pipeline's
description (lossbench.pipeline, which no stage depends on as code).
"""

from __future__ import annotations

# evaluate.dead_layer_share's default: the share of zero activations that makes conv_9 dead,
# for metrics written before evaluate recorded its verdict.
DEFAULT_DEAD_LAYER_SHARE = 0.99


# The share is compared with 1 - (a fraction of counts): a margin of rounding keeps a layer
# with exactly the share of zeros from being judged by the last bit of a float.
SHARE_TOLERANCE = 1e-12


def dead_by_share(active_fraction: float | None, dead_layer_share: float) -> bool | None:
    """Whether a ReLU layer whose `active_fraction` of activations is positive counts as dead:
    its zero share (1 - active) is at least `dead_layer_share`; None when unknown."""
    if active_fraction is None:
        return None
    return 1.0 - float(active_fraction) >= float(dead_layer_share) - SHARE_TOLERANCE


def final_layer_dead(metrics: dict, dead_layer_share: float = DEFAULT_DEAD_LAYER_SHARE) -> bool | None:
    """Whether a run's metrics say that its final conv layer (conv_9) is dead; None when they
    do not say (unknown, never taken as alive in a count).

    `lossbench evaluate` writes `final_layer_dead`: at least `evaluate.dead_layer_share` of
    conv_9's activations on the test set are zero. Metrics written before that key existed
    (or holding null there) are judged by the same rule from their `final_conv_active_fraction`
    where they hold it; else by the older, stricter one (every channel zero on every test
    image), which can only say "dead"; else the answer is unknown.
    """
    if metrics.get("final_layer_dead") is not None:
        return bool(metrics["final_layer_dead"])
    active = metrics.get("final_conv_active_fraction")
    if active is not None:
        return dead_by_share(active, dead_layer_share)
    channels = metrics.get("final_conv_channels")
    dead = metrics.get("final_conv_dead_channels")
    if channels is not None and dead is not None and channels > 0 and dead == channels:
        return True
    return None

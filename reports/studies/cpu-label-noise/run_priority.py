"""Run the remaining trainings of the label-noise study in an order that answers its tested
claims first, when the session cannot fit every run.

Each run is independent and deterministic (its own params, seed and checkpoint), so the order
changes only which runs exist when the time runs out, never a result. Priority: the losses of
the primary family (R1-R3: cross-entropy, MAE, the paper's hinge, GCE) at noise 0 and 0.4 for
every seed; then the paper's squared hinge (the secondary family); then the other losses; then
noise 0.2. Usage: python study/run_priority.py
"""
import run_study

PRIMARY_LOSSES = ["categorical_crossentropy", "mae", "hinge", "generalized_cross_entropy"]
SECONDARY_LOSSES = ["squared_hinge"]
OTHER_LOSSES = [loss for loss in run_study.LOSSES if loss not in PRIMARY_LOSSES + SECONDARY_LOSSES]

for losses in (PRIMARY_LOSSES, SECONDARY_LOSSES, OTHER_LOSSES):
    for seed in run_study.SEEDS:
        for rate in run_study.PRIMARY_RATES:
            for loss in losses:
                run_study.run(rate, loss, seed)
for seed in run_study.SEEDS:
    for loss in run_study.LOSSES:
        run_study.run(run_study.SECONDARY_RATES[0], loss, seed)

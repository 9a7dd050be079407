"""The range temperature scaling searches, shared by evaluate (which fits the temperature) and
the report (which says when a fit reached its edge)."""

# (lowest, highest) temperature T of softmax(z / T) that temperature scaling may fit; a fit at
# either end found no temperature that fits (at 100 the scaled model predicts about uniformly).
TEMPERATURE_BOUNDS = (0.01, 100.0)

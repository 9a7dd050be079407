"""lossbench: a reproducible study of loss functions for image classification.

Stages (one module each, one `lossbench <stage>` subcommand each): download, preprocess,
train, evaluate, compare, figures, report; plus `bench` for performance measurements.
"""

__version__ = "0.1.0"

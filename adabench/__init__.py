"""adabench: a reproducible benchmark of AdaGrad and the optimizers it is compared with."""

__version__ = "0.1.0"

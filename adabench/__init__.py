"""adabench: a reproducible benchmark of AdaGrad and the optimizers it is compared with.

``adabench.load_study("results/default")`` gives a study's runs and curves as typed pandas DataFrames.
"""

__version__ = "0.1.0"


def load_study(root):
    """The runs and curves of the study in ``root`` (adabench.analysis.export.load_study)."""
    from .analysis.export import load_study as load

    return load(root)

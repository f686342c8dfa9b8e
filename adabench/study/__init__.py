"""A study: its config, its plan of runs and jobs, its state on disk, its search, cost and progress.

Built on adabench.core; no Snakemake, no MLflow."""

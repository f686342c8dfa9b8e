"""The glue of the Snakemake workflow: what its jobs do, their logs, the study's upkeep before jobs start, and
MLflow (the store and the runs logged into it). Built on adabench.core, adabench.study and adabench.analysis."""

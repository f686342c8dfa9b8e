"""Snakemake rule `prepare_fashion_mnist`: the four IDX files into the uint8 tensors training loads."""
from adabench.workflow.steps import prepare, start_job

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = start_job(sm)
prepare(list(sm.input), sm.output.data, log)

"""Snakemake rule `fetch_fashion_mnist`: one IDX file from the first source whose copy verifies (no torch: light)."""
from adabench.core.download import fetch_one
from adabench.workflow.joblog import job_log

sm = snakemake  # noqa: F821  (injected by Snakemake)
fetch_one(sm.wildcards.filename, sm.params.sources, sm.output[0], sm.params.timeout, job_log(sm))

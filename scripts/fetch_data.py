"""Snakemake rule `fetch_fashion_mnist`: one IDX file from the first source whose copy verifies."""
from adabench.pipeline import fetch_one, start_job

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = start_job(sm)
fetch_one(sm.wildcards.filename, sm.params.sources, sm.output[0], sm.params.timeout, log)

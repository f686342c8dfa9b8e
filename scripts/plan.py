"""Snakemake rule `plan`: write the study's plan, one row per run (see adabench.study)."""
from adabench.pipeline import LogFile
from adabench.study import Study

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = LogFile(sm.log[0])
plan = Study(sm.config).plan()
plan.to_csv(sm.output[0], index=False)
log(f"{len(plan)} planned runs in {plan.job.nunique()} jobs")

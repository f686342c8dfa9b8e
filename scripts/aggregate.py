"""Snakemake rule `aggregate`: every run's verified records into runs.csv and curves.csv.gz (long tables)."""
from adabench.analysis.aggregate import gather
from adabench.pipeline import start_job, study_run_dirs
from adabench.study import Study, read_plan

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = start_job(sm)
runs, curves = gather(study_run_dirs(Study(sm.config), read_plan(sm.input.plan), list(sm.input.markers)))
runs.to_csv(sm.output.runs, index=False)
curves.to_csv(sm.output.curves, index=False)
log(f"{len(runs)} runs ({(runs.status == 'diverged').sum()} diverged), {len(curves)} curve rows")

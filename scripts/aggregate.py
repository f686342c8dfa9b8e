"""Snakemake rule `aggregate`: every run's records into results/tables/runs.csv and curves.csv.gz."""
from adabench.analysis.aggregate import gather
from adabench.pipeline import LogFile

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = LogFile(sm.log[0])
runs, curves = gather(sm.params.run_dirs, set(sm.params.study_keys))
runs.to_csv(sm.output.runs, index=False)
curves.to_csv(sm.output.curves, index=False)
log(f"{len(runs)} runs ({(runs.status == 'diverged').sum()} diverged), {len(curves)} curve rows")

"""Snakemake rule `aggregate`: every run's records into results/tables/runs.csv and curves.csv.gz."""
from adabench.analysis.aggregate import gather, run_roles
from adabench.pipeline import LogFile

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = LogFile(sm.log[0])
roles = run_roles(sm.input.markers, sm.input.tuned, set(sm.params.study_keys), set(sm.params.grid_keys))
runs, curves = gather(roles)
runs.to_csv(sm.output.runs, index=False)
curves.to_csv(sm.output.curves, index=False)
log(f"{len(runs)} runs ({(runs.status == 'diverged').sum()} diverged), {len(curves)} curve rows")

"""Snakemake rule `select_tuned`: each optimizer's learning rate, chosen on validation metrics only; the tuned
reruns it makes (tuned_runs.csv, in the plan's columns); which grid records it was chosen from."""
from adabench.analysis.aggregate import gather
from adabench.analysis.tuning import lr_sensitivity, select
from adabench.pipeline import start_job
from adabench.plan import read_plan, roles_by_dir, with_role
from adabench.sources import write_sources
from adabench.state import tuned_plan
from adabench.study import Study

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = start_job(sm)
runs, _, summaries = gather(roles_by_dir(with_role(read_plan(sm.input.plan), "grid")))
selection = select(runs)
selection.to_csv(sm.output.selection, index=False)
lr_sensitivity(runs).to_csv(sm.output.sensitivity, index=False)
tuned_plan(Study(sm.config), selection).to_csv(sm.output.tuned_runs, index=False)
write_sources(sm.output.sources, summaries)
for row in selection.itertuples():
    edge = f"; WARNING: the {row.grid_edge} lr of the grid, widen it" if row.grid_edge else ""
    log(f"{row.problem}/{row.optimizer}: lr {row.lr} ({row.metric} {row.validation_score:.4g}){edge}")

"""Snakemake rule `select_tuned`: the search has ended on every tuned problem; the tuning's tables: every problem's
choice, every rate's scores, the runs the search added and the tuned reruns (see adabench.workflow.steps.select_tuned)."""
from adabench.workflow.steps import select_tuned, start_job

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = start_job(sm)
select_tuned(sm.config, sm.input.plan, list(sm.input.rounds), list(sm.input.choices), sm.output, log)

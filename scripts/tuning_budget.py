"""Snakemake rule `tuning_budget`: from the grid runs already trained, per problem and optimizer the expected best
validation score after k rates tried (tuning_budget.csv) and how often each rate is chosen when the grid seeds are
resampled (choice_stability.csv); see adabench.analysis.budget. No torch: the runs table and problems.json."""
import pandas as pd

from adabench.analysis.aggregate import chance_levels
from adabench.analysis.budget import budget_table
from adabench.core.atomic import read_json
from adabench.workflow.joblog import job_log

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = job_log(sm)
runs = pd.read_csv(sm.input.runs)
problems = read_json(sm.input.problems)
budget, stability = budget_table(runs, chance=chance_levels(problems))  # 1000 resamples, default_rng(0)
budget.to_csv(sm.output.budget, index=False)
stability.to_csv(sm.output.stability, index=False)
for row in stability[stability.chosen].itertuples():
    chosen = "does not train" if pd.isna(row.lr) else f"lr {row.lr:g}"
    log(f"{row.problem}/{row.optimizer}: {chosen}, chosen again in {row.wins:.0%} of {row.resamples} seed resamples")
log(f"tuning budget: {len(budget)} rows; choice stability: {len(stability)} rows")

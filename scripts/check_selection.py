"""Snakemake rule `check_selection`: recompute the tuned choice from the validation metrics logged in
MLflow (after mlflow_sync) and fail unless it matches the one the workflow made (a guard against choosing on test).
No torch: the problems' declarations come from problems.json."""
import json

import pandas as pd

from adabench.analysis.aggregate import chance_levels
from adabench.analysis.tuning import select
from adabench.core.atomic import read_json
from adabench.workflow.joblog import job_log
from adabench.study.layout import StudyLayout
from adabench.study.plan import read_plan, with_role
from adabench.workflow.tracking import grid_runs_from_mlflow

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = job_log(sm)
grid_keys = [*with_role(read_plan(sm.input.plan), "grid").key, *read_plan(sm.input.search_runs).key]
made = pd.read_csv(sm.input.selection)
study = StudyLayout(sm.config)
declarations = {problem: declared for problem, declared in read_json(sm.input.problems).items()
                if problem in sm.config["tuning"]["problems"]}
recomputed = select(grid_runs_from_mlflow(study.tracking_uri(), study.experiment, grid_keys, declarations),
                    chance_levels(declarations))
merged = made.merge(recomputed, on=["problem", "optimizer"], suffixes=("", "_mlflow"), how="outer")
# an optimizer that does not train has no rate on either side: NaN equals NaN there
mismatch = merged[(merged.lr != merged.lr_mlflow) & ~(merged.lr.isna() & merged.lr_mlflow.isna())]
if len(mismatch):
    raise SystemExit(f"the tuned selection differs from the one recomputed from MLflow:\n{mismatch.to_string()}")
log(f"selection of {len(made)} settings recomputed from MLflow's validation metrics: identical")
with open(sm.output[0], "w") as out:
    json.dump({"settings": len(made), "identical": True}, out)

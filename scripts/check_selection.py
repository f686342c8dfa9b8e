"""Snakemake rule `check_selection`: recompute the tuned choice from the validation metrics logged in
MLflow (after mlflow_sync) and fail unless it matches the one the workflow made (a guard against choosing on test)."""
import json

import pandas as pd

from adabench.analysis.tuning import select
from adabench.layout import StudyLayout
from adabench.pipeline import chance_levels, start_job
from adabench.plan import read_plan, with_role
from adabench.tracking import grid_runs_from_mlflow

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = start_job(sm)
grid_keys = [*with_role(read_plan(sm.input.plan), "grid").key, *read_plan(sm.input.search_runs).key]
made = pd.read_csv(sm.input.selection)
study = StudyLayout(sm.config)
recomputed = select(grid_runs_from_mlflow(study.tracking_uri(), study.experiment, grid_keys),
                    chance_levels(sm.config["tuning"]["problems"]))
merged = made.merge(recomputed, on=["problem", "optimizer"], suffixes=("", "_mlflow"), how="outer")
# an optimizer that does not train has no rate on either side: NaN equals NaN there
mismatch = merged[(merged.lr != merged.lr_mlflow) & ~(merged.lr.isna() & merged.lr_mlflow.isna())]
if len(mismatch):
    raise SystemExit(f"the tuned selection differs from the one recomputed from MLflow:\n{mismatch.to_string()}")
log(f"selection of {len(made)} settings recomputed from MLflow's validation metrics: identical")
with open(sm.output[0], "w") as out:
    json.dump({"settings": len(made), "identical": True}, out)

"""A study's plan as the rest of the workflow reads it (``results/<study>/plan.csv``, and, in the same columns, the
runs the tuning search added: ``tuning/search_runs.csv`` for its later rounds' rates and ``tuning/tuned_runs.csv``
for the tuned reruns): one row per run with its key, identity, roles, job and directory. study.design writes the plan,
the select_tuned rule the other two; jobs, the MLflow sync, the tables and the results page read them.
Light: no torch.

A run's roles: ``study`` (a configured setting with one of the study's seeds), ``reference`` (a configuration the
reference report ran), ``defaults`` (an optimizer at its own defaults), ``grid`` (a rate of the learning-rate
search, with a grid seed), ``tuned`` (the chosen learning rate rerun with the study's seeds).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

ROLES = ("study", "reference", "defaults", "grid", "tuned")
PLAN_COLUMNS = ["key", "problem", "options_id", "precision", "optimizer", "setting", "hyperparameters", "lr", "seed",
                "roles", "job", "unit", "run_dir"]


def read_plan(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values={"lr": [""]})


def with_role(plan: pd.DataFrame, role: str) -> pd.DataFrame:
    """The plan's rows of the runs that have ``role``."""
    return plan[plan.roles.str.split(";").map(lambda roles: role in roles)]


def study_run_dirs(plan_path: str, *tuning_plans: str | None) -> dict[str, set[str]]:
    """Run directory -> roles, for every run of the plan and of the tuning's plans (select_tuned writes them)."""
    return roles_by_dir(read_plan(plan_path), *(read_plan(path) for path in tuning_plans if path))


def roles_by_dir(*plans: pd.DataFrame) -> dict[str, set[str]]:
    """Run directory -> roles, for the rows of the plans, a run in several plans with all its roles."""
    roles: dict[str, set[str]] = {}
    for plan in plans:
        for row in plan[plan.run_dir != ""].itertuples():
            roles.setdefault(row.run_dir, set()).update(row.roles.split(";"))
    return roles

"""From a validated config to the study's plan: every run, the roles it plays, and the job that trains it.

The plan is made once, here, and written to ``results/<study>/plan.csv``; every later step (training,
selection, aggregation, the cost planner) reads runs from it, never from a run key. A run's roles:
- ``study``: a configured (problem, optimizer, setting) with one of the study's seeds;
- ``reference``: a configuration the reference report ran (its printed numbers are compared with it);
- ``grid``: a point of the tuning protocol's learning-rate grid, with a grid seed;
- ``tuned``: the learning rate chosen on the grid, rerun with the study's seeds. Its learning rate is data
  (results/<study>/tuning/selection.csv), so its plan rows say "lr from selection".
Runs of one problem are trained in jobs of at most ``population_size`` runs each, as one population.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .config import settings_list
from .data import DATA_FILE
from .layout import StudyLayout
from .plan import FROM_SELECTION, PLAN_COLUMNS, ROLES
from .problems import PROBLEMS, problem_arguments
from .reference import load_reference
from .spec import RunSpec


def lr_grid(tuning: dict) -> list[float]:
    """Log-spaced learning rates, rounded to 3 significant digits so that run keys stay readable."""
    grid = tuning["lr_grid"]
    return [float(f"{lr:.3g}") for lr in np.geomspace(grid["low"], grid["high"], grid["points"])]


@dataclass(frozen=True)
class Job:
    """One training job: a population of runs of one problem. A tuned job's runs are (optimizer, seed) slots
    whose learning rate the selection gives."""

    id: str
    problem: str
    runs: tuple[RunSpec, ...] = ()
    tuned_slots: tuple[tuple[str, int], ...] = ()

    @property
    def tuned(self) -> bool:
        return bool(self.tuned_slots)

    def params(self) -> dict:
        """What the job computes, as Snakemake params: a change reruns the job."""
        return {"problem": self.problem, "runs": [spec.to_dict() for spec in self.runs],
                "tuned_slots": [list(slot) for slot in self.tuned_slots]}


class StudyProblems(StudyLayout):
    """What each problem of a study runs, from the config alone: options, seeds, optimizers, device, population
    size and a run's spec. No plan is made: what a training job needs of its study."""

    def entry(self, problem: str) -> dict:
        return self.config["problems"][problem]

    def options(self, problem: str) -> dict:
        """The problem's options as runs get them: the prepared dataset filled in where the problem reads one."""
        options = dict(self.entry(problem)["options"])
        if "data_file" in problem_arguments(problem):
            options.setdefault("data_file", DATA_FILE)
        return options

    def grid_options(self, problem: str) -> dict:
        """The options of the tuning grid's runs: the problem's options with its validation split held out."""
        holdout = self.entry(problem).get("grid_options", PROBLEMS.get(problem).holdout_options)
        return {**self.options(problem), **holdout}

    def population_size(self, problem: str) -> int:
        """The most runs one job of ``problem`` trains, for the device it trains on (device auto: this machine's)."""
        size = self.entry(problem)["population_size"]
        if isinstance(size, int):
            return size
        device = self.device(problem)
        return size["cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"]

    def seeds(self, problem: str) -> list[int]:
        return self.entry(problem).get("seeds", self.config["seeds"])

    def optimizers(self, problem: str) -> list[str]:
        return self.entry(problem).get("optimizers", self.config.get("optimizers", []))

    def device(self, problem: str) -> str:
        return self.entry(problem).get("device", self.config["device"])

    def spec(self, problem: str, optimizer: str, hyperparameters: dict, seed: int, grid: bool = False) -> RunSpec:
        options = self.grid_options(problem) if grid else self.options(problem)
        return RunSpec(problem, optimizer, dict(hyperparameters), seed, options, self.config["precision"])


class Study(StudyProblems):
    """The study's plan: every run with its roles, and the jobs that train them."""

    def __init__(self, config: dict):
        super().__init__(config)
        self.tuning = config.get("tuning")
        reference_problems = set(self.reference_problems())
        self.reference = [run for run in load_reference(config["reference"]["results"])
                          if run.problem in reference_problems]
        self._roles = self.expand()
        self.jobs = self.make_jobs()

    def reference_problems(self) -> list[str]:
        chosen = self.config["reference"]["problems"]
        return [p for p in self.config["problems"] if chosen is None or p in chosen]

    def expand(self) -> dict[str, tuple[RunSpec, set[str]]]:
        """Every run known before training, by key, with its roles (the tuned reruns come from the selection)."""
        found: dict[str, tuple[RunSpec, set[str]]] = {}

        def add(spec: RunSpec, role: str) -> None:
            found.setdefault(spec.key, (spec, set()))[1].add(role)

        for problem in self.config["problems"]:
            settings = self.entry(problem)["settings"]
            for optimizer in self.optimizers(problem):
                for hyperparameters in settings_list(settings.get(optimizer, {})):
                    for seed in self.seeds(problem):
                        add(self.spec(problem, optimizer, hyperparameters, seed), "study")
        for run in self.reference:
            for seed in self.seeds(run.problem):
                spec = self.spec(run.problem, run.optimizer, run.hyperparameters, seed)
                add(spec, "study")
                add(spec, "reference")
        for spec in self.grid_runs():
            add(spec, "grid")
        return found

    def grid_runs(self) -> list[RunSpec]:
        if not self.tuning:
            return []
        return [self.spec(problem, optimizer, {"lr": lr}, seed, grid=True)
                for problem in self.tuning["problems"] for optimizer in self.tuning["optimizers"]
                for lr in lr_grid(self.tuning) for seed in self.tuning["grid_seeds"]]

    def runs(self, role: str | None = None) -> list[RunSpec]:
        return [spec for spec, roles in self._roles.values() if role is None or role in roles]

    def roles(self, spec: RunSpec) -> set[str]:
        return self._roles[spec.key][1]

    # --- jobs --------------------------------------------------------------------------------------------
    def make_jobs(self) -> dict[str, Job]:
        jobs = {}
        for problem in self.config["problems"]:
            size = self.population_size(problem)
            # a population's runs share their options: the grid's (a held-out split) train apart from the rest
            by_options: dict[str, list[RunSpec]] = {}
            for spec in sorted((spec for spec in self.runs() if spec.problem == problem), key=lambda spec: spec.key):
                by_options.setdefault(spec.options_id, []).append(spec)
            chunks = [specs[start:start + size] for specs in by_options.values() for start in range(0, len(specs), size)]
            for index, chunk in enumerate(chunks):
                job = Job(f"{problem}-{index}", problem, runs=tuple(chunk))
                jobs[job.id] = job
            slots = [(optimizer, seed) for slot_problem, optimizer, seed in self.tuned_slots() if slot_problem == problem]
            if slots:
                for index, start in enumerate(range(0, len(slots), size)):
                    job = Job(f"{problem}-tuned-{index}", problem, tuned_slots=tuple(slots[start:start + size]))
                    jobs[job.id] = job
        return jobs

    def tuned_slots(self) -> list[tuple[str, str, int]]:
        """(problem, optimizer, seed) of every tuned rerun: its learning rate is the one the grid chooses."""
        if not self.tuning:
            return []
        return [(problem, optimizer, seed) for problem in self.tuning["problems"]
                for optimizer in self.tuning["optimizers"] for seed in self.seeds(problem)]

    def target(self, problem: str) -> float | None:
        """The headline value that counts as solving ``problem``: configured, else the reference report's best."""
        if problem in self.tuning.get("targets", {}):
            return float(self.tuning["targets"][problem])
        metric, mode = PROBLEMS.get(problem).headline
        printed = [run.printed[metric] for run in self.reference if run.problem == problem and metric in run.printed]
        return (max if mode == "max" else min)(printed) if printed else None

    def targets(self) -> dict[str, float]:
        """The target of each tuned problem that has one (time to target): the protocol tables' params."""
        if not self.tuning:
            return {}
        return {problem: target for problem in self.tuning["problems"] if (target := self.target(problem)) is not None}

    def reference_settings(self) -> list[dict]:
        """The reference report's runs that the study reproduces, as plain data in the report's order: problem,
        optimizer, the setting as run keys write it, and the numbers printed (the reproduction table's params)."""
        return [{"problem": run.problem, "optimizer": run.optimizer,
                 "setting": self.spec(run.problem, run.optimizer, run.hyperparameters, 0).setting,
                 "printed": dict(run.printed)} for run in self.reference]

    # --- the plan ----------------------------------------------------------------------------------------
    def plan(self) -> pd.DataFrame:
        rows = []
        for job in self.jobs.values():
            rows += [self.plan_row(spec, self.roles(spec), job.id) for spec in job.runs]
            for optimizer, seed in job.tuned_slots:
                spec = self.spec(job.problem, optimizer, {}, seed)  # for the options id; its lr comes later
                rows.append({**self.plan_row(spec, {"tuned"}, job.id), "key": "", "setting": FROM_SELECTION,
                             "hyperparameters": json.dumps({"lr": FROM_SELECTION}), "lr": float("nan"), "run_dir": ""})
        return pd.DataFrame(rows, columns=PLAN_COLUMNS)

    def plan_row(self, spec: RunSpec, roles: set[str], job: str) -> dict:
        return {"key": spec.key, "problem": spec.problem, "options_id": spec.options_id,
                "precision": spec.precision, "optimizer": spec.optimizer, "setting": spec.setting,
                "hyperparameters": json.dumps(spec.hyperparameters, sort_keys=True),
                "lr": spec.hyperparameters["lr"], "seed": spec.seed,
                "roles": ";".join(role for role in ROLES if role in roles),
                "job": job, "unit": PROBLEMS.get(spec.problem).unit, "run_dir": str(self.run_dir(spec))}

    def declarations(self) -> dict:
        """What the analysis reads of each of the study's problems (Problem.declarations): ``problems.json``."""
        return {problem: PROBLEMS.get(problem).declarations() for problem in self.config["problems"]}

    def declarations_json(self) -> str:
        return json.dumps(self.declarations(), indent=1, sort_keys=True) + "\n"

    def plan_digest(self) -> str:
        return hashlib.sha256(self.plan().to_csv(index=False).encode()).hexdigest()[:16]

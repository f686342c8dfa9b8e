"""From a validated config to the study's plan: every run known before training, the roles it plays, and the job
that trains it.

The plan is made once, here, and written to ``results/<study>/plan.csv``; every later step (training,
selection, aggregation, the cost planner) reads runs from it, never from a run key. A run's roles:
- ``study``: a configured (problem, optimizer, setting) with one of the study's seeds;
- ``reference``: a configuration the reference report ran (its printed numbers are compared with it);
- ``defaults``: an optimizer at its own defaults (torch's, or the registry's documented ones), the study's seeds;
- ``grid``: a learning rate of the tuning search, with a grid seed. The plan holds the first round (the configured
  grid); the search's later rounds add rates from the scores (adabench.study.search, Snakemake checkpoints);
- ``tuned``: the learning rate the search chose, rerun with the study's seeds (known once the search has ended:
  ``tuning/tuned_runs.csv``).
Runs of one problem are trained in jobs of at most ``population_size`` runs each, as one population.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

import pandas as pd
import torch

from .config import ConfigError, settings_list
from ..core.download import DATA_FILE
from .layout import StudyLayout
from .plan import PLAN_COLUMNS, ROLES
from ..core.problems import PROBLEMS, problem_arguments
from .reference import load_reference
from .search import Lattice
from ..core.identity import identity_columns
from ..core.spec import RunSpec

# the ids of the jobs the tuning search adds (Study.round_jobs, Study.tuned_jobs): <problem>-search<round>-<n>, and
# <problem>-tuned-<n>
SEARCH_JOB = re.compile(r"(?P<problem>.+)-search(?P<round>[0-9]+)-[0-9]+")
TUNED_JOB = re.compile(r"(?P<problem>.+)-tuned-[0-9]+")


# the longest file name most filesystems take: a run's setting is one directory of its path
MAX_NAME_BYTES = 255


def lr_grid(tuning: dict) -> list[float]:
    """The configured grid: log-spaced learning rates rounded to 3 significant digits (run keys stay readable), the
    even points of the search's lattice."""
    lattice = Lattice.of(tuning)
    return [lattice.rate(index) for index in lattice.grid()]


@dataclass(frozen=True)
class Job:
    """One training job: a population of runs of one problem."""

    id: str
    problem: str
    runs: tuple[RunSpec, ...] = ()

    def params(self) -> dict:
        """What the job computes, as Snakemake params: a change reruns the job."""
        return {"problem": self.problem, "runs": [spec.to_dict() for spec in self.runs]}


def chunk_jobs(prefix: str, problem: str, specs: list[RunSpec], size: int) -> list[Job]:
    """Runs of one problem in populations of at most ``size``, by key (a population's runs share their options)."""
    by_options: dict[str, list[RunSpec]] = {}
    for spec in sorted(specs, key=lambda spec: spec.key):
        by_options.setdefault(spec.options_id, []).append(spec)
    chunks = [specs[start:start + size] for specs in by_options.values() for start in range(0, len(specs), size)]
    return [Job(f"{prefix}-{index}", problem, runs=tuple(chunk)) for index, chunk in enumerate(chunks)]


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

    def tuned_optimizers(self, problem: str) -> list[str]:
        """The optimizers the search tunes on ``problem``: those of ``tuning.optimizers`` that the problem runs (an
        optimizer added to some problems only, such as a packaged one on the LeNets, is searched there alone, so
        each protocol of a problem holds the same optimizers)."""
        tuning, runs = self.config.get("tuning"), set(self.optimizers(problem))
        return [optimizer for optimizer in tuning["optimizers"] if optimizer in runs] if tuning else []

    def device(self, problem: str) -> str:
        return self.entry(problem).get("device", self.config["device"])

    def spec(self, problem: str, optimizer: str, hyperparameters: dict, seed: int, grid: bool = False) -> RunSpec:
        options = self.grid_options(problem) if grid else self.options(problem)
        return RunSpec(problem, optimizer, dict(hyperparameters), seed, options, self.config["precision"])

    def tuned_base(self, problem: str, optimizer: str) -> dict:
        """What the search keeps of an optimizer's configured setting: everything but the learning rate (AdaGrad's
        eps=1e-8 on the LeNets, as the reference report ran it), so that a tuned setting differs from the
        configured one in its learning rate alone. With no configured setting, or several, the defaults."""
        settings = settings_list(self.entry(problem)["settings"].get(optimizer, {}))
        return {name: value for name, value in settings[0].items() if name != "lr"} if len(settings) == 1 else {}

    def search_spec(self, problem: str, optimizer: str, lr: float, seed: int) -> RunSpec:
        """A run of the learning-rate search: the tuned base setting at ``lr``, on the grid's held-out split."""
        return self.spec(problem, optimizer, {**self.tuned_base(problem, optimizer), "lr": lr}, seed, grid=True)

    def tuned_spec(self, problem: str, optimizer: str, lr: float, seed: int) -> RunSpec:
        """A tuned rerun: the tuned base setting at the chosen ``lr``, on all the training data."""
        return self.spec(problem, optimizer, {**self.tuned_base(problem, optimizer), "lr": lr}, seed)


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
        """Every run known before training, by key, with its roles (the tuned reruns come from the selection).
        ConfigError naming both where two different runs would share one key (one directory, one MLflow run)."""
        found: dict[str, tuple[RunSpec, set[str]]] = {}
        origin: dict[str, str] = {}  # run key -> where its run comes from, to name both of a clash

        def add(spec: RunSpec, role: str, where: str, given: dict) -> None:
            described = f"{where} {given!r}"
            if spec.key in found and found[spec.key][0].identity() != spec.identity():
                # a string value may still render like another value (a "None" beside a null, where a
                # hyperparameter takes both): keeping the first would drop the second without a word
                raise ConfigError(where, f"the setting {given!r} gives the run key {spec.key}, the key of another "
                                         f"setting, {origin[spec.key]}: one of them would never be trained. Give "
                                         "one of them values that are written differently")
            if len(spec.setting.encode()) > MAX_NAME_BYTES:
                raise ConfigError(where, f"the setting {given!r} is written as {len(spec.setting.encode())} "
                                         f"bytes, more than a directory name holds ({MAX_NAME_BYTES}); use "
                                         "shorter values")
            found.setdefault(spec.key, (spec, set()))[1].add(role)
            origin.setdefault(spec.key, described)

        for problem in self.config["problems"]:
            settings = self.entry(problem)["settings"]
            for optimizer in self.optimizers(problem):
                listed = settings.get(optimizer, {})
                for index, hyperparameters in enumerate(settings_list(listed)):
                    where = f"problems.{problem}.settings.{optimizer}" + (f"[{index}]" if isinstance(listed, list)
                                                                          else "")
                    for seed in self.seeds(problem):
                        add(self.spec(problem, optimizer, hyperparameters, seed), "study", where, hyperparameters)
        for run in self.reference:
            where = f"{self.config['reference']['results']} ({run.problem}, {run.optimizer})"
            for seed in self.seeds(run.problem):
                spec = self.spec(run.problem, run.optimizer, run.hyperparameters, seed)
                add(spec, "study", where, run.hyperparameters)
                add(spec, "reference", where, run.hyperparameters)
        for problem in self.config.get("defaults_protocol") or []:
            for optimizer in self.optimizers(problem):
                for seed in self.seeds(problem):
                    add(self.spec(problem, optimizer, {}, seed), "defaults",
                        f"defaults_protocol ({problem}, {optimizer})", {})
        for spec in self.grid_runs():
            add(spec, "grid", f"tuning ({spec.problem}, {spec.optimizer})", spec.hyperparameters)
        return found

    def grid_runs(self) -> list[RunSpec]:
        """The search's first round: the configured grid, every rate with every grid seed."""
        if not self.tuning:
            return []
        return [self.search_spec(problem, optimizer, lr, seed)
                for problem in self.tuning["problems"] for optimizer in self.tuned_optimizers(problem)
                for lr in lr_grid(self.tuning) for seed in self.tuning["grid_seeds"]]

    def runs(self, role: str | None = None) -> list[RunSpec]:
        return [spec for spec, roles in self._roles.values() if role is None or role in roles]

    def roles(self, spec: RunSpec) -> set[str]:
        return self._roles[spec.key][1]

    # --- jobs --------------------------------------------------------------------------------------------
    def make_jobs(self) -> dict[str, Job]:
        """The jobs of the runs known before training (the grid's, on a held-out split, train apart)."""
        jobs = {}
        for problem in self.config["problems"]:
            specs = [spec for spec in self.runs() if spec.problem == problem]
            jobs.update((job.id, job) for job in chunk_jobs(problem, problem, specs, self.population_size(problem)))
        return jobs

    # --- the runs the search adds (adabench.study.search): known once a round's scores are ------------------------
    def round_jobs(self, problem: str, round_: int, rates: dict[str, list[float]]) -> list[Job]:
        """The jobs of a search round of ``problem``: every rate the previous round added (optimizer -> rates), with
        every grid seed. All of them, complete or not: the trainer skips complete runs, and a cluster node that
        reads the round again finds the same job."""
        specs = [self.search_spec(problem, optimizer, lr, seed) for optimizer, lrs in sorted(rates.items())
                 for lr in lrs for seed in self.tuning["grid_seeds"]]
        return chunk_jobs(f"{problem}-search{round_}", problem, specs, self.population_size(problem))

    def tuned_runs(self, chosen: dict[tuple[str, str], float]) -> list[RunSpec]:
        """The tuned reruns of the chosen rates ((problem, optimizer) -> lr; an optimizer with none, e.g. one that
        does not train, has no tuned runs), with the problem's seeds."""
        return [self.tuned_spec(problem, optimizer, lr, seed) for (problem, optimizer), lr in sorted(chosen.items())
                for seed in self.seeds(problem)]

    def tuned_jobs(self, chosen: dict[tuple[str, str], float]) -> list[Job]:
        """The jobs of the tuned reruns that the plan does not hold already (a tuned run equal to a study or defaults
        run is that run, trained by its job)."""
        planned = set(self._roles)
        jobs = []
        for problem in self.config["problems"]:
            specs = [spec for spec in self.tuned_runs(chosen) if spec.problem == problem and spec.key not in planned]
            jobs += chunk_jobs(f"{problem}-tuned", problem, specs, self.population_size(problem))
        return jobs

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
        return pd.DataFrame(rows, columns=PLAN_COLUMNS)

    def plan_row(self, spec: RunSpec, roles: set[str], job: str) -> dict:
        return {"key": spec.key, **identity_columns(spec.identity(), spec.key),
                "roles": ";".join(role for role in ROLES if role in roles),
                "job": job, "unit": PROBLEMS.get(spec.problem).unit, "run_dir": str(self.run_dir(spec))}

    def declarations(self) -> dict:
        """What the analysis reads of each of the study's problems (Problem.declarations): ``problems.json``."""
        return {problem: PROBLEMS.get(problem).declarations() for problem in self.config["problems"]}

    def declarations_json(self) -> str:
        return json.dumps(self.declarations(), indent=1, sort_keys=True) + "\n"

    def plan_digest(self) -> str:
        return hashlib.sha256(self.plan().to_csv(index=False).encode()).hexdigest()[:16]

"""Which outputs made from run records no longer hold: made from records that changed since (retrained, brought in
by git, damaged), missing runs the study plans now, with a table its sidecar lists damaged, or (the search's rounds)
made for another search than the config's, or unreadable. Reads the records' digests, the outputs' sidecars
(adabench.study.made_from), the tables they list and the rounds: no dataset, no MLflow store. Snakemake's
housekeeping removes what it finds (adabench.workflow.housekeeping); ``adabench status`` counts the search's rounds
and choices among them as not made, beside a running study."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .made_from import damaged_outputs, recorded_sources
from .state import StudyState, choice_file, complete_record, round_file, searched_specs


def stale_by_sidecar(state: StudyState, output: Path, sources: Path, planned: list[str],
                     what: str) -> list[tuple[Path, str]]:
    """``output`` (and the tables its sidecar ``sources`` lists) where it no longer holds: made from records that
    changed since, missing runs of ``planned`` (``what`` runs: the words of the reason), or with a listed table
    damaged; [] where it holds or was never made."""
    if not output.exists() and not (sources != output and sources.exists()):
        return []  # not made yet (a sidecar without its output: the output was removed, see below)
    found = recorded_sources(sources)
    recorded = found.get("records", {})
    changed, why_changed = changed_records(state, recorded)
    # the plan's runs it does not hold: complete since (brought in by git), or planned since (an optimizer added
    # to a finished study: its training jobs only feed this output, and Snakemake reruns no job for a missing
    # temporary marker while the output that reads it exists). The runs the tuning search added are not in the
    # plan: only the plan's runs can be missing from an output.
    missing = [key for key in planned if key not in recorded]
    damaged = damaged_outputs(sources, found) if sources != output and sources.exists() else []
    if changed:
        why = why_changed
    elif missing:
        why = (f"made from other records than {what} runs now ({len(missing)} planned runs it does not hold, "
               f"e.g. {missing[0]})")
    elif damaged:
        why = f"{damaged[0][0].name} is {damaged[0][1]}"
    else:
        return []
    stale = [(path, why) for path in [output, *(damaged_path for damaged_path, _ in damaged)] if path.exists()]
    if not output.exists():  # removed earlier (or lost): what was made from it still goes
        stale.append((output, why))
    return stale


def stale_tuning(state: StudyState) -> list[tuple[Path, str]]:
    """The search's rounds and each problem's choice that no longer hold (stale_search, and a choice made from
    records that changed or from another grid): what ``adabench status`` does not count as made. Reads the
    records' digests and the sidecars only (no dataset, no MLflow store: status runs beside a training study)."""
    study, stale = state.study, stale_search(state)
    grid_by_problem = {}
    for spec in study.grid_runs():  # once: each problem's choice is checked against its own grid's runs
        grid_by_problem.setdefault(spec.problem, []).append(spec.key)
    for problem in study.tuning["problems"] if study.tuning else []:
        choice = Path(choice_file(study, problem))
        stale += stale_by_sidecar(state, choice, choice.with_suffix(".sources.json"), grid_by_problem.get(problem, []),
                                  f"{problem}'s grid")
    return list(dict.fromkeys(stale))


def stale_search(state: StudyState) -> list[tuple[Path, str]]:
    """The search's rounds made from records that changed since, with every later round of their problem, the
    problem's table of rounds and its choice, and the tuning's tables: the search goes on from there again (its
    rounds' inputs are ancient, so that a clone's file times rerun none of them), or made for another search than
    the config's now."""
    study, stale = state.study, []
    for problem in study.tuning["problems"] if study.tuning else []:
        round_, rounds = 0, []
        while Path(round_file(study, problem, round_)).exists():
            path = Path(round_file(study, problem, round_))
            found = recorded_sources(path.with_suffix(".sources.json"))
            recorded = found.get("records", {})
            changed, why_changed = changed_records(state, recorded)
            # the runs it should score now: another grid, grid seeds or optimizers searched (a clone has no
            # Snakemake metadata to rerun it on its params) make it a round of another search
            expected = {spec.key for spec in searched_specs(study, problem, rounds)}
            if not found:
                why = "without the sidecar that says which records it scored (missing or damaged)"
            elif changed:
                why = why_changed
            elif set(recorded) != expected:
                why = "made for another search (its grid, seeds or optimizers)"
            else:
                why = ""
            if why:
                later = [Path(round_file(study, problem, after)) for after in range(round_, round_ + 1000)]
                stale += [(later_path, f"a round of the search {why}, or a round after it")
                          for later_path in later if later_path.exists()]
                stale += [(path, "its search goes on from a round made again")
                          for path in (Path(study.path("tuning", "search", problem, "rounds.csv")),
                                       Path(choice_file(study, problem)),
                                       Path(study.path("tuning", "selection.csv"))) if path.exists()]
                break
            try:
                rounds.append(pd.read_csv(path))
            except (OSError, ValueError) as error:
                stale += [(path, f"unreadable ({error})")]
                break
            round_ += 1
    return list(dict.fromkeys(stale))


def changed_records(state: StudyState, recorded: dict[str, str]) -> tuple[dict[str, str | None], str]:
    """The runs whose records differ from the summary digests an output's sidecar records (``recorded``: run key ->
    digest), each with its digest now (None: no complete record), and the reason an output made from them no longer
    holds ("" where none changed). One wording for every output: a valid record resealed since (retrained
    elsewhere, brought in by git) is told apart from damage, which its job trains again."""
    changed = {key: digest for key, digest in ((key, record_digest(state, key)) for key in recorded)
               if digest != recorded[key]}
    if not changed:
        return changed, ""
    key, digest = next(iter(changed.items()))
    return changed, (f"made from records that changed since ({len(changed)} runs, e.g. {key}: "
                     + ("damaged or gone; its job trains it again)" if digest is None else "another valid record now)"))


def record_digest(state: StudyState, key: str) -> str | None:
    """The summary digest of a run's complete records (adabench.study.state.complete_record: from the state for the
    plan's runs, else read, as for a run the tuning search added); None where it has none that verify."""
    if key in state.damaged:
        return None  # verified against its plan's spec (its identity too, which a read from disk does not check)
    summary = complete_record(state, key)
    return summary["summary_sha256"] if summary is not None else None

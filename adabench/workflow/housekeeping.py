"""The workflow's housekeeping, done by the Snakemake process that plans a study before any job starts: one
Snakemake per study (its own lock; Snakemake's are off, nolock in the profiles), and outputs that no longer describe
the records they were made from removed so that Snakemake builds them again. Only an invocation that runs jobs
changes anything: a dry run, a report or a DAG listing only says what a run would do.
"""
from __future__ import annotations

import binascii
import os
import sys
from base64 import urlsafe_b64decode
from pathlib import Path

from ..core.atomic import DamagedJSON, read_json
from ..core.data import FASHION_MNIST_CONTENT_SHA256, checksum_file, prepared_data_fault
from ..core.download import DATA_FILE, FASHION_MNIST_FILES, RAW_DIR, ChecksumError, verified_bytes
from ..core.locks import Locked, ProcessLock, describe
from ..study.design import Job, Study
from ..study.staleness import stale_by_sidecar, stale_tuning
from ..study.state import StudyState
from .store import store_fault

# Snakemake's modes that run no job (and a dry run): whatever they plan, they must change nothing
NON_EXECUTING_MODES = ("dryrun", "report", "unlock", "dag", "rulegraph", "filegraph", "d3dag", "summary",
                       "detailed_summary", "list_changes", "list_input_changes", "list_params_changes",
                       "list_code_changes", "list_untracked", "cleanup_metadata", "touch", "lint", "containerize",
                       "generate_unit_tests", "archive", "delete_all_output", "delete_temp_output",
                       "list_conda_envs", "conda_create_envs_only", "conda_cleanup_envs", "cleanup_shadow",
                       "container_cleanup_images", "print_compilation", "export_cwl", "list_rules", "list_target_rules")


def invocation_executes(argv: list[str] | None = None) -> bool:
    """Whether the Snakemake process reading the workflow will run jobs. Snakemake decides its mode only after
    the Snakefile is read (workflow.dryrun is False there even under -n), so the command line is read with
    Snakemake's own parser."""
    from snakemake.cli import get_argument_parser  # here: adabench status reads this module, Snakemake's CLI not

    args, _ = get_argument_parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    return not any(getattr(args, mode, None) for mode in NON_EXECUTING_MODES)


class StudyLocked(RuntimeError):
    """This study cannot be run now, for the reason given (another Snakemake runs it, a link inside it)."""


def take_study_lock(study: Study) -> ProcessLock:
    """The study's own lock, held by this Snakemake until it exits: a second Snakemake of the same study is
    refused, whatever happens to Snakemake's lock folder (which a Snakemake of another study removes when it
    ends). Studies of one checkout run side by side."""
    lock = ProcessLock(study.root / "snakemake.lock")
    try:
        return lock.acquire(wait=False)
    except Locked as locked:
        raise StudyLocked(f"study {study.name!r} is being run by another Snakemake: {describe(locked.holder)}. "
                          f"Wait for it to end, or stop it: adabench stop (with this run's --configfile)") from None


def symlinks_inside(root: Path) -> list[tuple[Path, str]]:
    """Symbolic links below a study's folder (not the folder itself), with where they point."""
    found, stack = [], [Path(root)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.is_symlink():
                found.append((Path(entry.path), os.readlink(entry.path)))
            elif entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
    return sorted(found)


def refuse_symlinks(study: Study) -> None:
    """A study keeps its runs, MLflow store, tables and figures inside its own folder: a symbolic link below it
    would send them elsewhere without a word. (The results/ folder or the study's folder itself may be a link:
    clusters put results on scratch disks.)"""
    found = symlinks_inside(study.root)
    if found:
        path, target = found[0]
        raise StudyLocked(f"{path} is a symbolic link (to {target}); a study writes only inside {study.root}. Replace "
                          f"the link with a folder, or link {study.root} itself"
                          + (f" ({len(found) - 1} more links below it)" if len(found) > 1 else ""))


def stale_outputs(state: StudyState, pending: dict[str, Job],
                  made_from: dict[str, list[str]] | None = None) -> list[tuple[Path, str]]:
    """Outputs that claim more than is true now, with the reason. Deleting them makes Snakemake build them, and
    what reads them, again:
    - the plan, if the config now plans other runs or its problems declare other things (problems.json);
    - the marker of a job that has runs to train again (damaged or deleted since the job ran);
    - tables, the search's rounds, each problem's choice, the tuning selection and the MLflow sync made from other
      records than the study's now (records brought in by git, retrained by hand, damaged, runs the config added
      since), and tables (CSV or Parquet) whose bytes are not those written (their sidecar's sha256s), each with
      what ``made_from`` lists as made from it.
      Snakemake's params (the records' digest, adabench.study.state.records_param) rerun such a job and all that reads
      its outputs where Snakemake has its metadata; a fresh clone has none, and Snakemake never rebuilds a missing
      output that only feeds outputs it holds up to date: so what is made from a stale output goes with it, and
      whatever the invocation asks for that was made from it is missing and made again from the records;
    - a prepared dataset that fails its checksum or is not the real Fashion-MNIST, raw files that do not
      verify, and an MLflow store marker whose store is gone or moved."""
    study, stale = state.study, []
    plan, declared = Path(study.path("plan.csv")), Path(study.path("problems.json"))
    # compared as bytes: a damaged file (not UTF-8 even) is merely different, and made again
    if plan.exists() and plan.read_bytes() != study.plan().to_csv(index=False).encode():
        stale.append((plan, "the config plans other runs now"))
    elif declared.exists() and declared.read_bytes() != study.declarations_json().encode():
        stale.append((plan, "its problems declare other metrics or figures now"))
    stale += [(Path(study.job_marker(job_id)), "its job has runs to train again")
              for job_id in pending if Path(study.job_marker(job_id)).exists()]
    stale += stale_tuning(state)
    for output, sources, planned, what in (
            (study.path("tables", "runs.csv"), study.path("tables", "runs.sources.json"), state.run_keys(),
             "the study's"),
            (study.path("tuning", "selection.csv"), study.path("tuning", "selection.sources.json"),
             state.run_keys("grid"), "the tuning grid's"),
            (study.path("mlflow", "synced.json"), study.path("mlflow", "synced.json"), state.run_keys(),
             "the study's")):
        stale += stale_by_sidecar(state, Path(output), Path(sources), planned, what)
    data = Path(DATA_FILE)
    data_fault = prepared_data_fault(data, content=FASHION_MNIST_CONTENT_SHA256) if data.exists() else ""
    stale += [(path, data_fault) for path in (data, checksum_file(data)) if data_fault and path.exists()]
    if not data.exists() or data_fault:
        # the data will be prepared again: from raw files that verify, else fetched again
        stale += damaged_raw_files(Path(RAW_DIR))
    stale += stale_store_marker(study)
    for output, _ in stale:  # grows as it goes: what is made from what is made from a stale output goes too
        stale += [(Path(path), f"made from {output}, which no longer holds") for path in (made_from or {}).get(
            str(output), []) if Path(path).exists() and Path(path) not in dict(stale)]
    return [(path, why) for path, why in stale if path.exists()]


def damaged_raw_files(raw_dir: Path) -> list[tuple[Path, str]]:
    """The fetched Fashion-MNIST files in ``raw_dir`` that do not verify (damaged since they were fetched)."""
    damaged = []
    for filename, sha256 in FASHION_MNIST_FILES.values():
        path = raw_dir / filename
        if path.exists():
            try:
                verified_bytes(path.read_bytes(), sha256, str(path))
            except ChecksumError as error:
                damaged.append((path, str(error)))
    return damaged


def stale_store_marker(study: Study) -> list[tuple[Path, str]]:
    """The MLflow store marker, if MLflow is no longer where it says or its SQLite store is gone or damaged."""
    marker = Path(study.path("mlflow", "experiment.json"))
    if not marker.exists():
        return []
    try:
        recorded = read_json(marker)
        uri, default = recorded["tracking_uri"], recorded["study_store"]
    except (OSError, DamagedJSON, KeyError) as error:
        return [(marker, f"unreadable ({error})")]
    # the study's own SQLite store moves with the study's directory; any other store is named by its URI
    if default != study.default_store() or (not default and uri != study.tracking_uri()):
        return [(marker, f"MLflow is now at {study.tracking_uri()}, not {uri}")]
    if default:
        database = Path(study.tracking_uri().removeprefix("sqlite:///"))
        if not database.exists():
            return [(marker, f"its store {study.tracking_uri()} is gone")]
        if fault := store_fault(database):
            return [(marker, f"its store {database} is damaged ({fault})")]
    return []


def in_study(name: str, study: Study) -> bool:
    """Whether a path as Snakemake writes it (relative to the working directory, or absolute) is the study's."""
    root = str(study.root)
    return Path(name).as_posix().startswith(root + "/") or f"/{root}/" in name


def incomplete_outputs(snakemake_dir: Path, study: Study) -> list[tuple[Path, str]]:
    """The study's outputs that exist although Snakemake marked them incomplete: a Snakemake killed while their
    job ran (a job's own process may even finish writing after Snakemake is gone). Snakemake reruns such a job
    ("forced"), but then skips the jobs reading its output as an ancient input (the files git carries), even those
    whose own outputs are missing (snakemake#4166; docs/dev/records-as-build-state-plan.md, fact 8): a plain rerun
    made only the plan and ended without the analysis. Removed first, the output is missing instead, and Snakemake
    plans every job that needs it. The one place the project reads Snakemake's state; read from its file persistence
    (.snakemake/incomplete/: each marker named by the output's path in URL-safe base64, cut into parts of which all
    but the last begin with "@"); markers of other studies' outputs are left alone."""
    found = []
    folder = Path(snakemake_dir) / "incomplete"
    for marker in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if not marker.is_file() or marker.name == "migration_underway":
            continue
        encoded = "".join(part.removeprefix("@") for part in marker.relative_to(folder).parts)
        try:
            name = urlsafe_b64decode(encoded).decode()
        except (binascii.Error, UnicodeDecodeError):
            continue
        if in_study(name, study) and Path(name).is_file():
            found.append((Path(name), "a Snakemake killed while its job ran left it marked incomplete"))
    return found


def remove_stale_outputs(stale: list[tuple[Path, str]], executes: bool, log) -> None:
    """Remove the stale outputs, saying why; an invocation that runs no job (a dry run, a report) only says what a
    run would remove, and changes nothing."""
    for path, reason in stale:
        if not executes:
            log(f"adabench: {path} no longer holds ({reason}); a run would remove it and build it again")
        else:
            log(f"adabench: {path} no longer holds ({reason}); removed, so that it is built again")
            path.unlink(missing_ok=True)

"""Snakemake rule `aggregate`: every run's verified records into runs.csv and curves.csv.gz (long tables), the
same as typed Parquet (what adabench.load_study reads), and which records they were made from (runs.sources.json)."""

from adabench.analysis.aggregate import gather
from adabench.analysis.export import write_parquet
from adabench.core.atomic import read_json
from adabench.workflow.joblog import job_log
from adabench.study.plan import study_run_dirs
from adabench.core.records import ENDED_EARLY
from adabench.study.made_from import output_digests, write_sources

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = job_log(sm)  # the records alone: no registry read, so neither torch nor the study's plugins are imported
declarations = read_json(sm.input.problems)
runs, curves, summaries = gather(study_run_dirs(sm.input.plan, sm.input.get("search_runs"), sm.input.get("tuned_runs")),
                                 declarations)
runs.to_csv(sm.output.runs, index=False)
curves.to_csv(sm.output.curves, index=False, compression={"method": "gzip", "mtime": 0})  # the same bytes each time
write_parquet(runs, curves, sm.output.runs_parquet, sm.output.curves_parquet)  # typed, for load_study
# the records' digests, and those of the tables' own bytes (a damaged Parquet file is made again: workflow.housekeeping)
tables = [sm.output.runs, sm.output.curves, sm.output.runs_parquet, sm.output.curves_parquet]
write_sources(sm.output.sources, summaries, {"outputs": output_digests(tables)})
log(f"{len(runs)} runs ({runs.status.isin(ENDED_EARLY).sum()} diverged or failed), {len(curves)} curve rows")

"""Snakemake rule `search_ended`: a problem's search has ended (its last round adds no rate); every round's
decisions in one table, what select_tuned reads."""
import pandas as pd

from adabench.core.atomic import atomic_write_text
from adabench.workflow.joblog import job_log

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = job_log(sm)
rounds = pd.concat([pd.read_csv(path) for path in sm.input], ignore_index=True)
atomic_write_text(sm.output[0], rounds.to_csv(index=False))
log(f"{sm.wildcards.problem}: the search ended after {len(sm.input)} rounds")

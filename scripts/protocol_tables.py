"""Snakemake rule `protocol_tables`: reference vs tuned protocol, paired tests, time to target, profile data."""
from pathlib import Path

import pandas as pd

from adabench.analysis.protocols import (display_protocols, paired_table, profile, protocol_table,
                                         time_to_target_table)
from adabench.analysis.tables import rounded, write_table
from adabench.joblog import job_log

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = job_log(sm)  # the tables and the rule's params alone: no registry read, no torch
runs = pd.read_csv(sm.input.runs)
curves = pd.read_csv(sm.input.curves)
problems, targets = sm.params.problems, sm.params.targets
tables = {
    "protocols": protocol_table(runs, problems),
    "paired": paired_table(runs, problems),
    "times": time_to_target_table(runs, curves, targets, problems),
}
shown = {"protocols": display_protocols}  # side by side; the other tables as they are, rounded
for name, table in tables.items():
    write_table(table, shown.get(name, rounded)(table), Path(sm.output[name][0]).with_suffix(""))
    log(f"{name}: {len(table)} rows")
profile(tables["times"]).to_csv(sm.output.profile, index=False)

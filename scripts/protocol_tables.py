"""Snakemake rule `protocol_tables`: the reference, defaults and tuned protocols side by side, paired tests, time to
target, profile data and the share of each gap to AdaGrad that tuning removes."""
from pathlib import Path

import pandas as pd

from adabench.analysis.protocols import (display_protocols, gap_share_table, left_out_note, paired_table, profile,
                                         profile_left_out, protocol_table, time_to_target_table)
from adabench.analysis.tables import rounded, write_table
from adabench.workflow.joblog import job_log

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = job_log(sm)  # the tables and the rule's params alone: no registry read, no torch
runs = pd.read_csv(sm.input.runs)
curves = pd.read_csv(sm.input.curves)
problems, targets = sm.params.problems, sm.params.targets
# what the problems declare (metric bounds, chance levels) and which optimizers are copies of another (no competitors)
declarations, checks = sm.params.declarations, sm.params.checks
tables = {
    "protocols": protocol_table(runs, problems, declarations, checks),
    "paired": paired_table(runs, problems, declarations=declarations, checks=checks),
    "times": time_to_target_table(runs, curves, targets, problems, checks),
    "gap_share": gap_share_table(runs, problems, checks),
}
shown = {"protocols": display_protocols}  # side by side; the other tables as they are, rounded
for name, table in tables.items():
    write_table(table, shown.get(name, rounded)(table), Path(sm.output[name][0]).with_suffix(""))
    log(f"{name}: {len(table)} rows")
profile(tables["times"], checks=checks, searched=sm.params.searched).to_csv(sm.output.profile, index=False)
note = left_out_note(profile_left_out(tables["times"], checks, sm.params.searched))
if note:
    log(f"performance profile: {note}")

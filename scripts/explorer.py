"""Snakemake rule `explorer`: the study's interactive results page, one self-contained HTML file (see
adabench.analysis.explorer). No torch."""
import hashlib
import time
from pathlib import Path

from adabench.analysis.explorer import build_page
from adabench.workflow.joblog import job_log
from adabench.core.provenance import git_commit

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = job_log(sm)
root = Path(sm.input.plan).parent
header = {"study": sm.config["study"], "plan_digest": hashlib.sha256(Path(sm.input.plan).read_bytes()).hexdigest()[:16],
          "commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M %Z")}
page = build_page(root, header, sm.params.checks, sm.params.optimizers)
Path(sm.output[0]).write_text(page)
log(f"wrote {sm.output[0]} ({len(page) / 1e6:.1f} MB)")

# AdaGrad benchmark: `snakemake --cores 4` rebuilds every run, table and figure of a study from scratch.
# config.yaml holds the defaults and the default study; `--configfile config/<study>.yaml` merges a study file
# (only what differs) over it. Everything a study computes goes under results/<study>/.
# Rules by stage in workflow/rules/; the logic they call lives in the adabench package.
import os
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/mlflow.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/tuning.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/figures.smk"


rule all:
    input:
        TABLES,
        FIGURES,
        SYNCED,
        study_path("explorer.html"),

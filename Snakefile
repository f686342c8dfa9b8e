# AdaGrad benchmark: `snakemake --cores 4` rebuilds every run, table and figure from scratch.
# Rules by stage in workflow/rules/; the logic they call lives in the adabench package.
import os

from snakemake.utils import min_version

min_version("9.0")


# --configfile replaces config.yaml instead of merging into it (a smaller study must not inherit its runs);
# --config key=value still overrides either
if not workflow.overwrite_configfiles:

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

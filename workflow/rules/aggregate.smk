# pandas gathers every run's own records (MLflow is a view, not the source of truth) into two long tables,
# after verifying each record; the tables are drawn from those.


rule aggregate:
    input:
        unpack(run_tables),
        markers=PENDING_MARKERS,
        **TUNED_MARKERS,
        problems=carried(PROBLEMS_FILE),  # what each problem declares: the runs' outcomes (chance levels)
    output:
        runs=RUNS_TABLE,
        curves=CURVES_TABLE,
        runs_parquet=study_path("tables", "runs.parquet"),
        curves_parquet=study_path("tables", "curves.parquet"),
        # the digests of the records it was made from: where Snakemake has no metadata (a fresh clone) this is what
        # says it no longer holds (adabench.workflow.housekeeping.stale_outputs removes it and what is made from it)
        sources=study_path("tables", "runs.sources.json"),
    params:
        # the digest of the records read: a changed record makes the tables, and all made from them, again
        records=table_records,
    conda:
        ENV
    log:
        study_path("logs", "aggregate.log"),
    script:
        "../../scripts/aggregate.py"


rule tables:
    input:
        runs=RUNS_TABLE,
    output:
        comparison=[
            report(study_path("tables", "comparison.csv"), caption="../report/comparison.rst", category="Tables"),
            study_path("tables", "comparison.md"),
            study_path("tables", "comparison.tex"),
        ],
        reproduction=[
            report(study_path("tables", "reproduction.csv"), caption="../report/reproduction.rst", category="Tables"),
            study_path("tables", "reproduction.md"),
            study_path("tables", "reproduction.tex"),
        ],
        overhead=[
            report(study_path("tables", "optimizer_overhead.csv"), caption="../report/optimizer_overhead.rst",
                   category="Tables"),
            study_path("tables", "optimizer_overhead.md"),
            study_path("tables", "optimizer_overhead.tex"),
        ],
        compute=[
            report(study_path("tables", "compute.csv"), caption="../report/compute.rst", category="Tables"),
            study_path("tables", "compute.md"),
            study_path("tables", "compute.tex"),
        ],
        implementation_checks=[
            report(study_path("tables", "implementation_checks.csv"), caption="../report/implementation_checks.rst",
                   category="Tables"),
            study_path("tables", "implementation_checks.md"),
            study_path("tables", "implementation_checks.tex"),
        ],
    params:
        # the reference report's runs and printed numbers: a change (config reference) redraws the table
        reference=STUDY.reference_settings(),
        # what the problems declare (metric bounds for the CIs, chance levels for the outcomes: problems.json)
        declarations=STUDY.declarations(),
        # copies of an optimizer (copy -> original): implementation checks, not competitors
        checks=config.get("checks", {}),
    conda:
        ENV
    log:
        study_path("logs", "tables.log"),
    script:
        "../../scripts/tables.py"


rule protocol_tables:
    input:
        runs=RUNS_TABLE,
        curves=CURVES_TABLE,
    output:
        protocols=[
            report(study_path("tables", "protocols.csv"), caption="../report/protocols.rst", category="Tuning"),
            study_path("tables", "protocols.md"),
            study_path("tables", "protocols.tex"),
        ],
        paired=[
            report(study_path("tables", "paired_tests.csv"), caption="../report/paired_tests.rst", category="Tuning"),
            study_path("tables", "paired_tests.md"),
            study_path("tables", "paired_tests.tex"),
        ],
        times=[
            report(
                study_path("tables", "time_to_target.csv"),
                caption="../report/time_to_target_table.rst",
                category="Tuning",
            ),
            study_path("tables", "time_to_target.md"),
            study_path("tables", "time_to_target.tex"),
        ],
        gap_share=[
            report(study_path("tables", "gap_share.csv"), caption="../report/gap_share.rst", category="Tuning"),
            study_path("tables", "gap_share.md"),
            study_path("tables", "gap_share.tex"),
        ],
        profile=study_path("tables", "performance_profile.csv"),
    params:
        # the tuned problems and what counts as solving each (config tuning.targets, else the report's best)
        problems=TUNING["problems"] if TUNING else [],
        targets=STUDY.targets(),
        # what the problems declare (metric bounds for the CIs, chance levels for the outcomes: problems.json)
        declarations=STUDY.declarations(),
        # copies of an optimizer (copy -> original): implementation checks, not competitors
        checks=config.get("checks", {}),
        # the optimizers searched: where one has no tuned run (no rate trained), the profile counts it unsolved
        searched=TUNING["optimizers"] if TUNING else [],
    conda:
        ENV
    log:
        study_path("logs", "protocol_tables.log"),
    script:
        "../../scripts/protocol_tables.py"

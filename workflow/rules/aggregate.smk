# pandas gathers every run's own records (MLflow is a view, not the source of truth) into tables.


rule aggregate:
    input:
        markers=expand(shard_marker("{shard}"), shard=list(SHARDS)),
        tuned=TUNED_MARKERS,
    output:
        runs="results/tables/runs.csv",
        curves="results/tables/curves.csv.gz",
    params:
        study_keys=[spec.key for spec in STUDY_RUNS],
        grid_keys=[spec.key for spec in GRID_RUNS],
    conda:
        "../../environment.yml"
    log:
        "results/logs/aggregate.log",
    script:
        "../../scripts/aggregate.py"


rule tables:
    input:
        runs=rules.aggregate.output.runs,
    output:
        comparison=[
            report("results/tables/comparison.csv", caption="../report/comparison.rst", category="Tables"),
            "results/tables/comparison.md",
            "results/tables/comparison.tex",
        ],
        seed=[
            report("results/tables/seed_vs_pipeline.csv", caption="../report/seed_vs_pipeline.rst", category="Tables"),
            "results/tables/seed_vs_pipeline.md",
            "results/tables/seed_vs_pipeline.tex",
        ],
    params:
        seed_reference=config.get("seed_reference", []),
    conda:
        "../../environment.yml"
    log:
        "results/logs/tables.log",
    script:
        "../../scripts/tables.py"


rule protocol_tables:
    input:
        runs=rules.aggregate.output.runs,
        curves=rules.aggregate.output.curves,
    output:
        protocols=[
            report("results/tables/protocols.csv", caption="../report/protocols.rst", category="Tuning"),
            "results/tables/protocols.md",
            "results/tables/protocols.tex",
        ],
        paired=[
            report("results/tables/paired_tests.csv", caption="../report/paired_tests.rst", category="Tuning"),
            "results/tables/paired_tests.md",
            "results/tables/paired_tests.tex",
        ],
        times=[
            report("results/tables/time_to_target.csv", caption="../report/time_to_target_table.rst", category="Tuning"),
            "results/tables/time_to_target.md",
            "results/tables/time_to_target.tex",
        ],
        profile="results/tables/performance_profile.csv",
    params:
        tuned_problems=TUNING["problems"] if TUNING else [],
        targets=TUNING.get("targets", {}) if TUNING else {},
    conda:
        "../../environment.yml"
    log:
        "results/logs/protocol_tables.log",
    script:
        "../../scripts/protocol_tables.py"

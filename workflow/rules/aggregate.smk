# pandas gathers every run's own records (MLflow is a view, not the source of truth) into tables.


rule aggregate:
    input:
        expand(shard_marker("{shard}"), shard=list(SHARDS)),
    output:
        runs="results/tables/runs.csv",
        curves="results/tables/curves.csv.gz",
    params:
        run_dirs=[str(run_dir(spec)) for spec in RUNS],
        study_keys=[spec.key for spec in study_runs(config)],
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

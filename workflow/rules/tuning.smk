# The tuning protocol: a learning-rate grid trained with the grid seeds, a choice made on the validation
# split only, the chosen setting rerun with the study's seeds, and a check that the choice can be recomputed
# from the validation metrics logged in MLflow (no test metric involved).


rule select_tuned:
    input:
        GRID_MARKERS,
    output:
        selection="results/tuning/selection.csv",
        sensitivity=report(
            "results/tuning/lr_sensitivity.csv", caption="../report/lr_sensitivity_table.rst", category="Tuning"
        ),
    params:
        grid_dirs=[str(run_dir(spec)) for spec in GRID_RUNS],
    conda:
        "../../environment.yml"
    log:
        "results/logs/select_tuned.log",
    script:
        "../../scripts/select_tuned.py"


rule train_tuned:
    input:
        unpack(tuned_inputs),
    output:
        "results/tuned/{tuned}.json",
    params:
        problem=lambda wildcards: TUNED_JOBS[wildcards.tuned][0],
        optimizer=lambda wildcards: TUNED_JOBS[wildcards.tuned][1],
        seeds=lambda wildcards: TUNED_JOBS[wildcards.tuned][2],
        options=lambda wildcards: problem_settings(config, TUNED_JOBS[wildcards.tuned][0]),
        device=lambda wildcards: shard_device(config, TUNED_JOBS[wildcards.tuned][0]),
        deterministic=config.get("deterministic", False),
        tracking_uri=TRACKING_URI,
        experiment=config["mlflow"]["experiment"],
    wildcard_constraints:
        tuned=".+",
    threads: config.get("threads", 2)
    resources:
        gpu=lambda wildcards: 0 if shard_device(config, TUNED_JOBS[wildcards.tuned][0]) == "cpu" else 1,
    conda:
        "../../environment.yml"
    log:
        "results/logs/train_tuned/{tuned}.log",
    benchmark:
        "results/benchmarks/train_tuned/{tuned}.tsv"
    script:
        "../../scripts/train_tuned.py"


rule check_selection:
    input:
        selection=rules.select_tuned.output.selection,
        markers=GRID_MARKERS,
    output:
        "results/tuning/selection_check.json",
    params:
        tracking_uri=TRACKING_URI,
        experiment=config["mlflow"]["experiment"],
        grid_keys=[spec.key for spec in GRID_RUNS],
    conda:
        "../../environment.yml"
    log:
        "results/logs/check_selection.log",
    script:
        "../../scripts/check_selection.py"

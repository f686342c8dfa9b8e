# Training: one job per run (LeNets), or per (problem, optimizer) for problems that train faster
# than a process starts. A job logs each run to MLflow; its records live in results/runs/<run key>/.


rule train:
    input:
        unpack(shard_inputs),
    output:
        "results/shards/{shard}.json",
    params:
        runs=shard_runs,
        device=lambda wildcards: shard_device(config, shard_problem(wildcards)),
        deterministic=config.get("deterministic", False),
        tracking_uri=TRACKING_URI,
        experiment=config["mlflow"]["experiment"],
    wildcard_constraints:
        shard=".+",
    threads: config.get("threads", 2)
    resources:
        gpu=shard_gpus,
    conda:
        "../../environment.yml"
    log:
        "results/logs/train/{shard}.log",
    benchmark:
        "results/benchmarks/train/{shard}.tsv"
    script:
        "../../scripts/train.py"

# The tuned protocol: a learning-rate search in rounds on each tuned problem (adabench.study.search: widen until the
# best rate is inside the rates tried, then refine to 1/3 decade around it, every rate with every grid seed, scored
# on the validation split only), then the chosen rate rerun with the study's seeds (tuned jobs of the train rule,
# known from the problem's own choice), and a check that the choice can be recomputed from the validation metrics
# logged in MLflow (no test metric involved).
# The rounds are checkpoints: what a round trains is known only from the scores of the round before it. A round,
# the end of the search and the choice read a few records and decide in seconds: they run where Snakemake runs (a
# cluster's login node), not as cluster jobs that would wait in the queue on the path to every tuned rerun. For the
# same reason they go before any training job once their runs are trained (priority): Snakemake otherwise prefers
# the job with the larger inputs, a training job with its dataset, and a round of a cheap problem waited for hours
# behind the LeNets' training (seen on the default study: sparse_logreg's round 1).


localrules:
    search_round,
    search_ended,
    select_tuned,


checkpoint search_round:
    input:
        unpack(search_round_inputs),
    output:
        decisions=study_path("tuning", "search", "{problem}", "round-{round}.csv"),
        # the digests of the records it was made from: where Snakemake has no metadata (a fresh clone) this is what
        # says it no longer holds (adabench.workflow.housekeeping.stale_outputs removes it and what is made from it)
        sources=study_path("tuning", "search", "{problem}", "round-{round}.sources.json"),
    params:
        search=lambda wildcards: search_params(wildcards.problem),
        # the digest of the records the round scores: a changed record makes it, and every later round, again
        records=lambda wildcards: search_records(wildcards.problem, int(wildcards.round)),
    wildcard_constraints:
        problem="|".join(TUNING["problems"]) if TUNING else "no-tuning",
        round="[0-9]+",
    priority: 10
    conda:
        ENV
    log:
        study_path("logs", "search", "{problem}-round-{round}.log"),
    script:
        "../../scripts/search_round.py"


# A problem's search ends with its choice: its tuned reruns are known from it (a checkpoint), and they train while
# the other problems are still searched.
checkpoint search_ended:
    input:
        rounds=search_rounds,
    output:
        rounds=study_path("tuning", "search", "{problem}", "rounds.csv"),
        choice=study_path("tuning", "search", "{problem}", "choice.csv"),
        sources=study_path("tuning", "search", "{problem}", "choice.sources.json"),  # as a round's
    params:
        search=lambda wildcards: search_params(wildcards.problem),
        records=lambda wildcards: search_records(wildcards.problem),  # its rounds' (their inputs are ancient)
    wildcard_constraints:
        problem="|".join(TUNING["problems"]) if TUNING else "no-tuning",
    priority: 10
    conda:
        ENV
    log:
        study_path("logs", "search", "{problem}-ended.log"),
    script:
        "../../scripts/search_ended.py"


rule select_tuned:
    input:
        plan=carried(PLAN),
        rounds=[carried(path) for path in expand(study_path("tuning", "search", "{problem}", "rounds.csv"),
                                                 problem=TUNING["problems"] if TUNING else [])],
        choices=[carried(path) for path in expand(study_path("tuning", "search", "{problem}", "choice.csv"),
                                                  problem=TUNING["problems"] if TUNING else [])],
    output:
        selection=SELECTION,
        sensitivity=report(
            study_path("tuning", "lr_sensitivity.csv"), caption="../report/lr_sensitivity_table.rst", category="Tuning"
        ),
        search=report(study_path("tuning", "search.csv"), caption="../report/search.rst", category="Tuning"),
        search_runs=SEARCH_RUNS,
        tuned_runs=TUNED_RUNS,
        sources=study_path("tuning", "selection.sources.json"),  # as a round's
    params:
        search={problem: search_params(problem) for problem in TUNING["problems"]} if TUNING else {},
        # the digest of the grid's records, every round's: the scores are read from them
        records=lambda wildcards: {problem: search_records(problem) for problem in (TUNING or {}).get("problems", [])},
    priority: 10
    conda:
        ENV
    log:
        study_path("logs", "select_tuned.log"),
    script:
        "../../scripts/select_tuned.py"


# how much the choice owes to the number of rates tried and to the grid seeds (Dodge et al. 2019's expected
# validation performance; the choice under resampled grid seeds), from the runs already trained
rule tuning_budget:
    input:
        runs=RUNS_TABLE,
        problems=carried(PROBLEMS_FILE),
    output:
        budget=report(study_path("tuning", "tuning_budget.csv"), caption="../report/tuning_budget_table.rst",
                      category="Tuning"),
        stability=report(study_path("tuning", "choice_stability.csv"), caption="../report/choice_stability_table.rst",
                         category="Tuning"),
    conda:
        ENV
    log:
        study_path("logs", "tuning_budget.log"),
    script:
        "../../scripts/tuning_budget.py"


rule check_selection:
    input:
        plan=carried(PLAN),
        problems=carried(PROBLEMS_FILE),
        search_runs=carried(SEARCH_RUNS),
        selection=SELECTION,
        synced=SYNCED,
    output:
        study_path("tuning", "selection_check.json"),
    conda:
        ENV
    log:
        study_path("logs", "check_selection.log"),
    script:
        "../../scripts/check_selection.py"

# The tuning protocol: a learning-rate grid trained with the grid seeds, a choice made on the validation
# split only, the chosen setting rerun with the study's seeds (tuned jobs of the train rule), and a check that
# the choice can be recomputed from the validation metrics logged in MLflow (no test metric involved).


rule select_tuned:
    input:
        plan=ancient(PLAN),
        markers=GRID_MARKERS,
    output:
        selection=SELECTION,
        sensitivity=report(
            study_path("tuning", "lr_sensitivity.csv"), caption="../report/lr_sensitivity_table.rst", category="Tuning"
        ),
        tuned_runs=TUNED_RUNS,
        sources=study_path("tuning", "selection.sources.json"),
    conda:
        "../../environment.yml"
    log:
        study_path("logs", "select_tuned.log"),
    script:
        "../../scripts/select_tuned.py"


rule check_selection:
    input:
        plan=ancient(PLAN),
        selection=SELECTION,
        synced=SYNCED,
    output:
        study_path("tuning", "selection_check.json"),
    conda:
        "../../environment.yml"
    log:
        study_path("logs", "check_selection.log"),
    script:
        "../../scripts/check_selection.py"

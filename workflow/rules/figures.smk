# Seaborn figures (PNG and PDF), each with a caption for `snakemake --report report.html`.
# Only figure settings are params here, so editing them redraws figures and retrains nothing.

FIGURE_INPUTS = {
    "learning_curves": ["curves"],
    "quadratic_trajectories": ["curves"],
    "final_metric": ["runs"],
    "effective_lr": ["curves"],
    "sparse_features": ["runs"],
    "gerschgorin": [],
}


def figure_inputs(wildcards):
    return {name: rules.aggregate.output[name] for name in FIGURE_INPUTS[wildcards.figure]}


rule figure:
    input:
        unpack(figure_inputs),
    output:
        png=report(
            "results/figures/{figure}.png",
            caption="../report/{figure}.rst",
            category="Figures",
        ),
        pdf="results/figures/{figure}.pdf",
    params:
        dpi=FIGURE_SETTINGS.get("dpi", 150),
        style=FIGURE_SETTINGS.get("style", "whitegrid"),
    wildcard_constraints:
        figure="|".join(FIGURE_NAMES),
    log:
        "results/logs/figures/{figure}.log",
    script:
        "../../scripts/figure.py"

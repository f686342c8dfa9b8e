# Seaborn figures (PNG and PDF), each with a caption for `snakemake --report report.html`.
# Only figure settings are params here, so editing them redraws figures and retrains nothing.

rule figure:
    input:
        unpack(figure_inputs),
    output:
        png=report(
            "results/figures/{figure}.png",
            caption="../report/figure.rst",
            category="Figures",
        ),
        pdf="results/figures/{figure}.pdf",
    params:
        caption=lambda wildcards: Path(workflow.basedir, "workflow/report", f"{wildcards.figure}.rst").read_text(),
        dpi=FIGURE_SETTINGS.get("dpi", 150),
        style=FIGURE_SETTINGS.get("style", "whitegrid"),
    wildcard_constraints:
        figure="|".join(FIGURE_NAMES),
    conda:
        "../../environment.yml"
    log:
        "results/logs/figures/{figure}.log",
    script:
        "../../scripts/figure.py"

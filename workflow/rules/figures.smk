# Seaborn figures (PNG and PDF), each with a caption for `snakemake --report`. Only figure settings are
# params here, so editing them redraws figures and retrains nothing.


rule figure:
    input:
        unpack(figure_inputs),
    output:
        png=report(
            study_path("figures", "{figure}.png"),
            caption="../report/figure.rst",
            category="Figures",
        ),
        pdf=study_path("figures", "{figure}.pdf"),
    params:
        caption=lambda wildcards: Path(workflow.basedir, "workflow/report", f"{wildcards.figure}.rst").read_text(),
        dpi=config["figures"]["dpi"],
        style=config["figures"]["style"],
    wildcard_constraints:
        figure="|".join(FIGURE_NAMES),
    conda:
        "../../environment.yml"
    log:
        study_path("logs", "figures", "{figure}.log"),
    script:
        "../../scripts/figure.py"

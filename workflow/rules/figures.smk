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
        optimizers=STUDY_OPTIMIZERS,
    wildcard_constraints:
        figure="|".join(FIGURE_NAMES),
    conda:
        ENV
    log:
        study_path("logs", "figures", "{figure}.log"),
    script:
        "../../scripts/figure.py"


# The study's interactive results page: every table sortable and filterable, the curves and the tuning as plotly
# figures, one self-contained HTML file (JavaScript inline) that works offline.
rule explorer:
    input:
        plan=carried(PLAN),
        problems=carried(PROBLEMS_FILE),
        runs=study_path("tables", "runs.parquet"),
        curves=study_path("tables", "curves.parquet"),
        tables=[path for path in TABLES if path.endswith(".csv")],
        figures_data=EXPLORER_DATA,
    output:
        report(study_path("explorer.html"), caption="../report/explorer.rst", category="Explorer"),
    params:
        checks=config["checks"],
        optimizers=STUDY_OPTIMIZERS,
    conda:
        ENV
    log:
        study_path("logs", "explorer.log"),
    script:
        "../../scripts/explorer.py"

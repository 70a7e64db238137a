# Energy of LLM inference and its efficiency optimisations (Fernandez et al., 2025).
#   snakemake --cores 2                                 the embedded CPU default (config/smoke.yaml)
#   snakemake --configfile config/config.yaml ...       the study's matrix on GPUs
#   snakemake --profile profiles/slurm ...              the same through Slurm
from snakemake.utils import min_version

min_version("9.0")


# The report opens on the study's claims (workflow/report/workflow.rst).
report: "workflow/report/workflow.rst"


if not workflow.overwrite_configfiles:

    configfile: "config/smoke.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/measure.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/workloads.smk"


onstart:
    print_estimate()


onsuccess:
    print_against_estimate()


rule all:
    default_target: True
    input:
        final_targets(),

rule fig10:
    input:
        aggregate_for("fig10"),
    output:
        report(
            f"results/figures/{HARDWARE}/fig10_controlled_sweeps_pytorch.{FIG_FORMAT}",
            caption="../report/fig10.rst",
            category="Controlled sweeps",
        ),
    log:
        f"logs/figures/{HARDWARE}/fig10.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        cli=CLI,
        dpi=FIG_DPI,
        name="fig10",
    shell:
        "{params.cli} figure {params.name} --measurements {input} --out {output} "
        "--dpi {params.dpi} > {log} 2>&1"


rule table_controlled_sweeps:
    input:
        aggregate_for("table_controlled_sweeps"),
    output:
        report(
            f"results/tables/{HARDWARE}/controlled_sweeps.csv",
            caption="../report/table_controlled_sweeps.rst",
            category="Controlled sweeps",
        ),
    log:
        f"logs/tables/{HARDWARE}/controlled_sweeps.log",
    localrule: True
    conda:
        "../../envs/analysis.yaml"
    params:
        cli=CLI,
        name="controlled_sweeps",
    shell:
        "{params.cli} table {params.name} --measurements {input} --out {output} > {log} 2>&1"


use rule fig10 as fig2 with:
    input:
        aggregate_for("fig2"),
    output:
        report(
            f"results/figures/{HARDWARE}/fig2_controlled_sweeps_vllm.{FIG_FORMAT}",
            caption="../report/fig2.rst",
            category="Controlled sweeps",
        ),
    log:
        f"logs/figures/{HARDWARE}/fig2.log",
    params:
        cli=CLI,
        dpi=FIG_DPI,
        name="fig2",


use rule fig10 as fig11 with:
    input:
        aggregate_for("fig11"),
    output:
        report(
            f"results/figures/{HARDWARE}/fig11_controlled_sweeps_vllm_all_lengths.{FIG_FORMAT}",
            caption="../report/fig11.rst",
            category="Controlled sweeps",
        ),
    log:
        f"logs/figures/{HARDWARE}/fig11.log",
    params:
        cli=CLI,
        dpi=FIG_DPI,
        name="fig11",


use rule fig10 as fig5 with:
    input:
        aggregate_for("fig5"),
    output:
        report(
            f"results/figures/{HARDWARE}/fig5_engine_optimisations.{FIG_FORMAT}",
            caption="../report/fig5.rst",
            category="Engine optimisations",
        ),
    log:
        f"logs/figures/{HARDWARE}/fig5.log",
    params:
        cli=CLI,
        dpi=FIG_DPI,
        name="fig5",


use rule fig10 as fig9 with:
    input:
        aggregate_for("fig9"),
    output:
        report(
            f"results/figures/{HARDWARE}/fig9_online_serving.{FIG_FORMAT}",
            caption="../report/fig9.rst",
            category="Online serving",
        ),
    log:
        f"logs/figures/{HARDWARE}/fig9.log",
    params:
        cli=CLI,
        dpi=FIG_DPI,
        name="fig9",


use rule fig10 as fig6 with:
    input:
        aggregate_for("fig6"),
    output:
        report(
            f"results/figures/{HARDWARE}/fig6_tensor_parallel.{FIG_FORMAT}",
            caption="../report/fig6.rst",
            category="Tensor parallelism",
        ),
    log:
        f"logs/figures/{HARDWARE}/fig6.log",
    params:
        cli=CLI,
        dpi=FIG_DPI,
        name="fig6",


use rule table_controlled_sweeps as table_engine_optimisations with:
    input:
        aggregate_for("table_engine_optimisations"),
    output:
        report(
            f"results/tables/{HARDWARE}/engine_optimisations.csv",
            caption="../report/table_engine_optimisations.rst",
            category="Engine optimisations",
        ),
    log:
        f"logs/tables/{HARDWARE}/engine_optimisations.log",
    params:
        cli=CLI,
        name="engine_optimisations",


use rule table_controlled_sweeps as table_online_serving with:
    input:
        aggregate_for("table_online_serving"),
    output:
        report(
            f"results/tables/{HARDWARE}/online_serving.csv",
            caption="../report/table_online_serving.rst",
            category="Online serving",
        ),
    log:
        f"logs/tables/{HARDWARE}/online_serving.log",
    params:
        cli=CLI,
        name="online_serving",


use rule table_controlled_sweeps as table_tensor_parallel with:
    input:
        aggregate_for("table_tensor_parallel"),
    output:
        report(
            f"results/tables/{HARDWARE}/tensor_parallel.csv",
            caption="../report/table_tensor_parallel.rst",
            category="Tensor parallelism",
        ),
    log:
        f"logs/tables/{HARDWARE}/tensor_parallel.log",
    params:
        cli=CLI,
        name="tensor_parallel",


use rule table_controlled_sweeps as table_trace_replay with:
    input:
        aggregate_for("table_trace_replay"),
    output:
        report(
            f"results/tables/{HARDWARE}/trace_replay.csv",
            caption="../report/table_trace_replay.rst",
            category="Workload estimate",
        ),
    log:
        f"logs/tables/{HARDWARE}/trace_replay.log",
    params:
        cli=CLI,
        name="trace_replay",


use rule fig10 as fig3 with:
    input:
        aggregate_for("fig3"),
    output:
        report(
            f"results/figures/{HARDWARE}/fig3_decoding_strategies.{FIG_FORMAT}",
            caption="../report/fig3.rst",
            category="Decoding strategies",
        ),
    log:
        f"logs/figures/{HARDWARE}/fig3.log",
    params:
        cli=CLI,
        dpi=FIG_DPI,
        name="fig3",


use rule fig10 as fig4 with:
    input:
        aggregate_for("fig4"),
    output:
        report(
            f"results/figures/{HARDWARE}/fig4_architectures.{FIG_FORMAT}",
            caption="../report/fig4.rst",
            category="Architectures",
        ),
    log:
        f"logs/figures/{HARDWARE}/fig4.log",
    params:
        cli=CLI,
        dpi=FIG_DPI,
        name="fig4",


use rule table_controlled_sweeps as table_decoding with:
    input:
        aggregate_for("table_decoding"),
    output:
        report(
            f"results/tables/{HARDWARE}/decoding.csv",
            caption="../report/table_decoding.rst",
            category="Decoding strategies",
        ),
    log:
        f"logs/tables/{HARDWARE}/decoding.log",
    params:
        cli=CLI,
        name="decoding",


use rule table_controlled_sweeps as table_architectures with:
    input:
        aggregate_for("table_architectures"),
    output:
        report(
            f"results/tables/{HARDWARE}/architectures.csv",
            caption="../report/table_architectures.rst",
            category="Architectures",
        ),
    log:
        f"logs/tables/{HARDWARE}/architectures.log",
    params:
        cli=CLI,
        name="architectures",


use rule fig10 as fig8 with:
    input:
        aggregate_for("fig8"),
    output:
        report(
            f"results/figures/{HARDWARE}/fig8_classical_tasks.{FIG_FORMAT}",
            caption="../report/fig8.rst",
            category="Classical tasks",
        ),
    log:
        f"logs/figures/{HARDWARE}/fig8.log",
    params:
        cli=CLI,
        dpi=FIG_DPI,
        name="fig8",


use rule fig10 as fig12 with:
    input:
        aggregate_for("fig12"),
    output:
        report(
            f"results/figures/{HARDWARE}/fig12_classical_tasks_vllm.{FIG_FORMAT}",
            caption="../report/fig12.rst",
            category="Classical tasks",
        ),
    log:
        f"logs/figures/{HARDWARE}/fig12.log",
    params:
        cli=CLI,
        dpi=FIG_DPI,
        name="fig12",


use rule table_controlled_sweeps as table_classical_tasks with:
    input:
        aggregate_for("table_classical_tasks"),
    output:
        report(
            f"results/tables/{HARDWARE}/classical_tasks.csv",
            caption="../report/table_classical_tasks.rst",
            category="Classical tasks",
        ),
    log:
        f"logs/tables/{HARDWARE}/classical_tasks.log",
    params:
        cli=CLI,
        name="classical_tasks",


use rule table_controlled_sweeps as table_classical_tasks_vllm with:
    input:
        aggregate_for("table_classical_tasks_vllm"),
    output:
        report(
            f"results/tables/{HARDWARE}/classical_tasks_vllm.csv",
            caption="../report/table_classical_tasks_vllm.rst",
            category="Classical tasks",
        ),
    log:
        f"logs/tables/{HARDWARE}/classical_tasks_vllm.log",
    params:
        cli=CLI,
        name="classical_tasks_vllm",

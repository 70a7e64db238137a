"""Write one job's plan (computed from the config by llm_energy.measure.plan) to its JSON file."""

from pathlib import Path

out = Path(snakemake.output[0])  # noqa: F821 - injected by Snakemake
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(snakemake.params.plan)  # noqa: F821
Path(snakemake.log[0]).write_text(f"wrote {out}\n")  # noqa: F821

"""Measure the energy of large language model inference.

The package does the work; the Snakemake workflow in ``workflow/`` orchestrates it. The
pieces are small and swappable: a :class:`~llm_energy.backends.base.Backend` runs generation,
an :class:`~llm_energy.meters.base.EnergyMeter` measures a window, and
:mod:`llm_energy.measure.protocol` turns repeated windows into one tidy row per measured point.
"""

__version__ = "0.1.0"

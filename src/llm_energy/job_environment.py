"""Environment variables that the processes of one measurement job pass to each other."""

from __future__ import annotations

# The PID of the job's first process: processes it started (tensor-parallel ranks, vLLM's
# workers) are the job's own, not contention, when a meter looks at who uses its GPUs.
JOB_PID_ENV = "LLM_ENERGY_JOB_PID"

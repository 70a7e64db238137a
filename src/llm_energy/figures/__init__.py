"""Drawing functions: one per paper figure or table, each taking the tidy measurements table
and returning a figure or a table. Which function draws which output, with its file name,
caption and category, is said by the families' outputs (:mod:`llm_energy.families`)."""

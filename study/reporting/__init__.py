"""The study's report: thesis-shaped tables, the thesis's own numbers, statistics and significance tests,
efficiency figures and plots, all read from a study directory (the CLI is study/report.py)."""

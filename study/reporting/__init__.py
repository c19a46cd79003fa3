"""The study's report: thesis-shaped tables, the thesis's own numbers, significance tests,
efficiency figures and training-dynamics plots, all read from a study directory.

`python -m study.report STUDY_DIR` (study/report.py) puts them together.
"""

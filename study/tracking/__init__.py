"""Watching a study while it runs: the study's progress line, progress bars for long loops, W&B logging."""

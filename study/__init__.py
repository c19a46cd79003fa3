"""What a study is and running it: the CLI (run.py), the spec, grids and scales, orchestration on Ray Tune, results."""

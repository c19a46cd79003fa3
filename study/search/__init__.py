"""The Optuna search (`--search optuna`): its spec, its run on Ray Tune and selection, its outputs, its CLI options."""

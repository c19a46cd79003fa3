"""Search spaces: the thesis grid as data (and the Optuna spaces around it)."""

"""Study service: CLI, spec, orchestration and results of the cross-encoder optimizer study."""

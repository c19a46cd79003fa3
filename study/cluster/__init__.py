"""Where trials run: joining a Ray cluster, starting Ray nodes as processes, and study storage (local or URI)."""

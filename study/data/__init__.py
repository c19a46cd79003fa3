"""Data types and data sources (built-in synthetic collection, loaders) for the study."""

"""Evaluation: rerank candidates, write TREC runs, compute ir_measures metrics."""

"""Tools outside the workflow's DAG: benchmark and sweep."""

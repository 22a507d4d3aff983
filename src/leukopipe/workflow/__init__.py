"""Workflow plumbing: config, rule-file helpers, step CLIs, atomic writes, provenance."""

"""Plumbing: atomic writes, hashing, disk space, OS errors, worker pools, signals, provenance, the
CLI wrapper and the settings schema. Knows no stage.
"""

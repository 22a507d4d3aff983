"""leukopipe: transfer-learning pipeline for leukemic (ALL) vs healthy (Hem) cells, C-NMC 2019."""

__version__ = "0.1.0"

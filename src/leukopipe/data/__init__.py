"""Data stage: download, raw C-NMC layout, names, merge, splits, CV folds, synthetic data."""

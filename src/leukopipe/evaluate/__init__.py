"""Evaluation stage: inference, metrics, referral, subject level, TTA, ensembles, Grad-CAM."""

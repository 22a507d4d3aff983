"""Reporting stage: comparison tables, figures, the HTML report, published numbers."""

"""Figures, results.json and the self-contained HTML report."""

"""Analyses of a finished run: memory, comparison, report, diagrams, n-gram baselines, guesses."""

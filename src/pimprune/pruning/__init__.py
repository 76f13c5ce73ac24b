"""Pruning: patterns (projections), budgets, saliency, dependency graph, masks, ADMM and methods."""

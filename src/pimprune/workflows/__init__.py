"""Workflows: what orchestrates the core packages (train, prune, evaluate, demo, sweep, headline).

The core packages (``mapping``, ``pruning``, ``hardware``, ``training``) import nothing from here.
"""

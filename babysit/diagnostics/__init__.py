"""Diagnoses of a model and its training set-up.

Each module exposes functions that return a :class:`babysit.diagnostics.result.Result`
(findings with evidence and fixes, plus the numbers behind them). Nothing here
imports click or rich and nothing prints: the CLI renders results, the store
persists them. Kept free of imports so that ``import babysit.diagnostics.x``
loads only what ``x`` needs.
"""

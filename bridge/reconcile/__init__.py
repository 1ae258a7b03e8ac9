"""Reconciliation: what the targets recorded against what the store says was delivered."""

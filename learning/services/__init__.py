"""Writes to the catalog. Each function validates, then writes inside one transaction.

Bad input raises ``learning.errors.InvalidInput`` before anything is written.
"""

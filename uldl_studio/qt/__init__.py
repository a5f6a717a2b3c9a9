"""Thin Qt views over core objects."""

"""Reproducible training of the embedded-default mini models."""

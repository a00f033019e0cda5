"""Contracts shared by tasks, datasets, model adapters and the runner."""

"""Stored results: per-sample maps and images, the job store, tidy frames."""

"""Builders for the project's mini models (standard diffusers / transformers components)."""

"""Sampling pipelines for reference-conditioned latent diffusion models."""

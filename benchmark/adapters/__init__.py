"""Model adapters, one file each; declared by name in :data:`benchmark.registry.ADAPTERS` and imported on use."""

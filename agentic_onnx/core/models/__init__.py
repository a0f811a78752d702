"""Models on disk: the catalog, the store, downloads, custom and linked models, resolution, LoRA adapters."""

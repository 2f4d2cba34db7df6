"""Training: MoCo v2 model, queue, bands, rank logging (imports torch)."""

"""Data layer: manifests -> audio -> telephone channel -> features (+SpecAugment) -> bucketed batches."""

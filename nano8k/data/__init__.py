"""Data layer: manifests -> audio -> telephone channel -> features (+SpecAugment) -> bucketed batches.

- ``audio``: decode a file or a span of it, pick channels by policy, probe headers, resample
- ``badsamples``: the bad-input policy (an error naming file and line, or counted, capped skips)
- ``manifests``: reading and writing manifests; ``channel``: the simulated telephone channel;
  ``pipeline``: datasets, batching, shards and the Lightning data module
"""

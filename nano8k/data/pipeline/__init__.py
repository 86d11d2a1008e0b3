"""The loading pipeline: utterances -> audio -> augmentation -> features -> bucketed batches for Lightning.

- ``dataset``: one utterance to a ``SpeechItem`` (speed, channel, fbank, SpecAugment, LFR, prompt)
- ``speed``, ``specaugment``: the augmentations around the channel
- ``batching``: length-bucketed batches under frame and token budgets, sharded per rank, resumable mid-epoch
- ``shards``: WebDataset tar shards for streaming (``nano8k shards`` writes them)
- ``datamodule``: ``TelephoneDataModule``, the Lightning data module of ``nano8k fit``
"""

__all__ = [
    "batching",
    "datamodule",
    "dataset",
    "shards",
    "specaugment",
    "speed",
]  # the modules; the package imports none until asked

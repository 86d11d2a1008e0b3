"""The loading pipeline: utterances -> audio -> augmentation -> features -> bucketed batches for Lightning.

- ``dataset``: one utterance to a ``SpeechItem`` (speed, channel, fbank, SpecAugment, LFR, prompt)
- ``speed``, ``specaugment``: the augmentations around the channel
- ``batching``: length-bucketed batches under frame and token budgets, sharded per rank, resumable mid-epoch
- ``shards``: WebDataset tar shards for streaming (``nano8k shards`` writes them)
- ``datamodule``: ``TelephoneDataModule``, the Lightning data module of ``nano8k fit``
"""

from nano8k.data.pipeline.batching import BucketBatchSampler
from nano8k.data.pipeline.datamodule import TelephoneDataModule
from nano8k.data.pipeline.dataset import SpeechDataset
from nano8k.data.pipeline.specaugment import SpecAugment
from nano8k.data.pipeline.speed import SpeedPerturb

__all__ = ["BucketBatchSampler", "SpecAugment", "SpeechDataset", "SpeedPerturb", "TelephoneDataModule"]

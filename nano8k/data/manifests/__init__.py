"""Manifests: what to train on and score, read from every format nano8k takes and written as ChatML or Lhotse.

- ``utterance``: one entry (an audio file, or a span and channel of one) and a reading's result
- ``io``: read ChatML, ``{key,source,target}`` jsonl, Kaldi folders and Lhotse; write ChatML
- ``kaldi``, ``lhotse_io``: those two formats; ``textfile``: lines of plain or gzip text, bad bytes named
- ``table``: utterances by column (memory-mappable); ``cache``: a manifest's table and audio headers, cached beside it
- ``fields``: extra entry fields (speaker, domain, ...) for per-group reports
- ``validate``: every line checked (``nano8k validate``)
"""

__all__ = [
    "cache",
    "fields",
    "io",
    "kaldi",
    "lhotse_io",
    "table",
    "textfile",
    "utterance",
    "validate",
]  # the modules; the package imports none until asked

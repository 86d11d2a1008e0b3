"""Data the package ships: the tiny model's template (tiny-nano/), the mini model (mini-nano/) and preview clips.

Code that uses them lives in ``nano8k.model.bundled``.
"""

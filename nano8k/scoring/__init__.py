"""Scoring layer: text normalizers, error rates (CER / WER / MER), per-group reports and their plots."""

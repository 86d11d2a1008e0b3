"""Preflight check functions (model, data, training, memory) used by ``nano8k.preflight``."""

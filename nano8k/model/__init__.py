"""The released Fun-ASR-Nano, faithfully: features, prompts, checkpoint I/O, splice, loss and decoding."""

"""The mini Fun-ASR-Nano: digit-string corpora, our self-pretrained wideband model and its reproduction."""

"""nano8k: fine-tune Fun-ASR-Nano-2512 for 8 kHz telephone speech."""

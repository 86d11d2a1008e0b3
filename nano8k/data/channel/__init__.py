"""The telephone channel: named profiles of effects that turn clean audio into what a call sounds like.

- ``telephone``: ``TelephoneChannel`` and its profiles (landline, mobile, VoIP, archive), one drawn per utterance
- ``effects``: band-pass, level, noise, hum, reverb, gain ramps, clipping, codecs, packet loss
- ``codecs``: narrowband codec round trips (G.711 through ``g711``; GSM, Opus, AMR-NB through soundfile and PyAV)
- ``audio_pool``: recorded noise and room impulse responses; ``settings``: config mappings to settings dataclasses
- ``simulate``: a channel from a config file, applied to a manifest or previewed (``nano8k simulate``)
"""

__all__ = [
    "audio_pool",
    "codecs",
    "effects",
    "g711",
    "settings",
    "simulate",
    "telephone",
]  # the modules; the package imports none until asked

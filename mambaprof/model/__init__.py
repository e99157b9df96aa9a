"""The model side: load what the user named, build presets, find its mixers and blocks, make its inputs, count
FLOPs and bytes, and the mixer adapters. May import: the top-level taxonomy, errors and env; nothing that runs,
measures or stores."""

from mambaprof.model.adapters import MixerRecipe, register_mixer, unregister_mixer

__all__ = ["MixerRecipe", "register_mixer", "unregister_mixer"]

"""Per-family recipes: what a transformers-style Mamba mixer does differently from the plain one, as data.

Every transformers Mamba family carries its own copy of the mixer class, but (transformers 5.x) all copies
run one of two forwards, calling the module-level kernel functions of their own modeling file
(`causal_conv1d_fn` + `mamba_selective_scan` for Mamba-1, `causal_conv1d_fn` + `mamba2_chunk_scan` for
Mamba-2). What differs is small and is described here, one `MixerRecipe` per family:

- FalconMamba: weightless RMS norms on dt, B and C after x_proj (`dt_layernorm`, `b_layernorm`, `c_layernorm`).
- Jamba: the same three norms, as RMSNorm modules with weights.
- Bamba, Nemotron-H, Zamba2, Granite-4.0-H (GraniteMoeHybridMambaLayer): the plain Mamba-2 forward; their
  gated RMSNorm modules (grouped for Nemotron-H) are called as modules, so group size and weights follow.
- Falcon-H1: muP multipliers: the mixer input times `ssm_in_multiplier`, the in_proj output times the
  `mup_vector` buffer; gating is the gated RMSNorm when `mamba_rms_norm` is true, else `y * silu(z)`.

A recipe is found for a module by class name; a class the table does not list gets a recipe derived from
its structure (`derive_recipe`), with the same knobs. Either way the split forward is checked against the
module's own forward on a probe input before it is used (see structure.discover).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import nn


@dataclass(frozen=True)
class MixerRecipe:
    """What a transformers-style mixer family does beyond the plain Mamba-1/Mamba-2 forward.

    name: the family's label (`falcon_mamba`, `jamba`, ...; `derived` for a structure-derived recipe).
    family: `mamba1` or `mamba2`.
    classes: mixer class names this recipe is for (transformers spelling).
    bcdt_norms: submodule names applied to (dt, B, C) right after the x_proj split (Mamba-1), or ().
    in_multiplier: attribute multiplying the mixer input before in_proj, or None.
    proj_multiplier: attribute (parameter or buffer) multiplying the in_proj output, or None.
    gated_norm_flag: attribute that, when false, replaces the gated RMSNorm by `y * silu(z)`, or None.
    conv_fn / scan_fn: names of the module-level kernel functions of the family's modeling file.
    note: what differs, in words (goes to the run record).
    """

    name: str
    family: str
    classes: tuple[str, ...] = ()
    bcdt_norms: tuple[str, ...] = ()
    in_multiplier: str | None = None
    proj_multiplier: str | None = None
    gated_norm_flag: str | None = None
    conv_fn: str = "causal_conv1d_fn"
    scan_fn: str = ""
    note: str = ""

    @property
    def scan_function(self) -> str:
        """The scan kernel function's name (family default when not set)."""
        return self.scan_fn or ("mamba_selective_scan" if self.family == "mamba1" else "mamba2_chunk_scan")


_BCDT = ("dt_layernorm", "b_layernorm", "c_layernorm")

RECIPES: tuple[MixerRecipe, ...] = (
    MixerRecipe("mamba", "mamba1", ("MambaMixer",), note="plain Mamba-1"),
    MixerRecipe("falcon_mamba", "mamba1", ("FalconMambaMixer",), bcdt_norms=_BCDT,
                note="weightless RMS norms on dt, B, C after x_proj"),
    MixerRecipe("jamba", "mamba1", ("JambaMambaMixer",), bcdt_norms=_BCDT,
                note="RMSNorm (with weights) on dt, B, C after x_proj"),
    MixerRecipe("mamba2", "mamba2", ("Mamba2Mixer",), note="plain Mamba-2"),
    MixerRecipe("bamba", "mamba2", ("BambaMixer",), note="plain Mamba-2 forward"),
    MixerRecipe("nemotron_h", "mamba2", ("NemotronHMamba2Mixer",),
                note="plain Mamba-2 forward; grouped gated RMSNorm (n_groups groups)"),
    MixerRecipe("zamba2", "mamba2", ("Zamba2MambaMixer",), note="plain Mamba-2 forward"),
    MixerRecipe("granitemoehybrid", "mamba2", ("GraniteMoeHybridMambaLayer",), note="plain Mamba-2 forward"),
    MixerRecipe("falcon_h1", "mamba2", ("FalconH1Mixer",), in_multiplier="ssm_in_multiplier",
                proj_multiplier="mup_vector", gated_norm_flag="mamba_rms_norm",
                note="muP: input x ssm_in_multiplier, in_proj output x mup_vector; gated RMSNorm only when "
                     "mamba_rms_norm, else y*silu(z)"),
)

BY_CLASS: dict[str, MixerRecipe] = {c: r for r in RECIPES for c in r.classes}


def derive_recipe(module: nn.Module, family: str) -> MixerRecipe:
    """A recipe for a mixer class the table does not list, from the submodules and attributes it has."""
    norms = tuple(n for n in _BCDT if isinstance(getattr(module, n, None), nn.Module))
    found = [f"norms {','.join(norms)}"] if norms else []
    in_mult = "ssm_in_multiplier" if hasattr(module, "ssm_in_multiplier") else None
    proj_mult = "mup_vector" if hasattr(module, "mup_vector") else None
    flag = "mamba_rms_norm" if hasattr(module, "mamba_rms_norm") else None
    found += [a for a in (in_mult, proj_mult, flag) if a]
    note = "derived from structure" + (f": {', '.join(found)}" if found else "")
    return MixerRecipe("derived", family, (type(module).__name__,), bcdt_norms=norms if family == "mamba1" else (),
                       in_multiplier=in_mult, proj_multiplier=proj_mult, gated_norm_flag=flag, note=note)


def recipe_for(module: nn.Module, family: str) -> MixerRecipe:
    """The table's recipe for this module's class (when its family agrees), else one derived from structure."""
    recipe = BY_CLASS.get(type(module).__name__)
    if recipe is not None and recipe.family == family:
        return recipe
    derived = derive_recipe(module, family)
    return replace(derived, name=recipe.name) if recipe is not None else derived

"""Find the Mamba mixers of a model, their blocks, and the model-level modules around them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from torch import nn

from mambaprof.errors import UnsupportedModelError
from mambaprof.model.adapters import SUPPORTED_CLASSES, MixerAdapter, MixerDims, adapter_for, class_path
from mambaprof.taxonomy import MODEL_LAYER, component_order

_MAMBA_LIKE = re.compile(r"(Mamba\w*Mixer|^Mamba2?$|^Mamba3$|Mamba\w*Layer)$")
_NORM_LIKE = re.compile(r"Norm", re.IGNORECASE)
_CONTAINERS = (nn.ModuleList, nn.Sequential, nn.ModuleDict)


def is_norm(module: nn.Module) -> bool:
    """True for normalisation modules (RMSNorm, LayerNorm, ...), judged by class name."""
    return bool(_NORM_LIKE.search(type(module).__name__))


@dataclass
class MixerSite:
    """One supported mixer and where it sits.

    layer: index of the mixer in model order (the `layer` column).
    block: the module holding the mixer as a direct child (None when that is a container).
    norms / others: the block's other direct children, split into norms and the rest.
    fused_add_norm: the block computes its norm (with the residual add) through a fused function
        rather than its norm module, so the block's leftover time is `norm`, not `residual`.
    """

    layer: int
    name: str
    module: nn.Module
    adapter: MixerAdapter
    dims: MixerDims
    block: nn.Module | None = None
    norms: list[nn.Module] = field(default_factory=list)
    others: list[nn.Module] = field(default_factory=list)
    fused_add_norm: bool = False

    @property
    def mixer_class(self) -> str:
        """`module.Class` of the mixer."""
        return class_path(self.module)


@dataclass
class ModelStructure:
    """Everything the instrumenter hooks and the counts need."""

    root: nn.Module
    mixers: list[MixerSite]
    embeddings: list[nn.Module]
    lm_heads: list[nn.Module]
    final_norms: list[nn.Module]
    fused_final_norm: tuple[nn.Module, nn.Module] | None
    unsupported: list[str]
    d_model: int
    vocab_size: int | None

    @property
    def family(self) -> str:
        """`mamba1`, `mamba2` or `mixed`."""
        fams = {s.dims.family for s in self.mixers}
        return fams.pop() if len(fams) == 1 else "mixed"

    @property
    def mixer_classes(self) -> list[str]:
        """Distinct mixer classes in model order."""
        return list(dict.fromkeys(s.mixer_class for s in self.mixers))

    @property
    def fused_norm_layers(self) -> set[int]:
        """Layers whose block norm is fused with the residual add."""
        return {s.layer for s in self.mixers if s.fused_add_norm}


def discover(model: nn.Module) -> ModelStructure:
    """Walk the model: supported mixers (in order), blocks, embeddings, lm_head, final norm.

    Raises UnsupportedModelError (naming the supported classes) when there is no supported mixer.
    """
    parent: dict[int, nn.Module] = {}
    names: dict[int, str] = {}
    for name, module in model.named_modules():
        names[id(module)] = name
        for child in module.children():
            parent.setdefault(id(child), module)

    sites: list[MixerSite] = []
    unsupported: list[str] = []
    mixer_ids: set[int] = set()
    for name, module in model.named_modules():
        adapter = adapter_for(module)
        if adapter is None:
            if _MAMBA_LIKE.search(type(module).__name__) and not any(
                    id(m) in mixer_ids for m in _ancestors(module, parent)):
                unsupported.append(f"{name or '<root>'} ({class_path(module)})")
            continue
        if any(id(m) in mixer_ids for m in _ancestors(module, parent)):
            continue
        mixer_ids.add(id(module))
        site = MixerSite(layer=len(sites), name=name, module=module, adapter=adapter, dims=adapter.dims(module))
        block = parent.get(id(module))
        if block is not None and block is not model and not isinstance(block, _CONTAINERS):
            site.block = block
            for child in block.children():
                if child is module:
                    continue
                (site.norms if is_norm(child) else site.others).append(child)
            site.fused_add_norm = bool(getattr(block, "fused_add_norm", False))
        sites.append(site)

    if not sites:
        found = f"; Mamba-like modules without an adapter: {', '.join(unsupported[:3])}" if unsupported else ""
        raise UnsupportedModelError(
            f"{type(model).__name__} has no supported Mamba mixer{found}",
            "supported mixer classes: " + ", ".join(SUPPORTED_CLASSES))

    block_ids = {id(s.block) for s in sites if s.block is not None}
    inside_blocks: set[int] = set()
    for s in sites:
        root = s.block if s.block is not None else s.module
        inside_blocks.update(id(m) for m in root.modules())

    embeddings = [m for m in model.modules() if isinstance(m, nn.Embedding) and id(m) not in inside_blocks]
    lm_heads = [m for n, m in model.named_modules() if n.split(".")[-1] == "lm_head" and isinstance(m, nn.Linear)]
    vocab = embeddings[0].num_embeddings if embeddings else None
    if not lm_heads and vocab is not None:
        lm_heads = [m for m in model.children() if isinstance(m, nn.Linear) and m.out_features == vocab]
    final_norms = [
        m for m in model.modules()
        if is_norm(m) and id(m) not in inside_blocks
        and not any(isinstance(a, _CONTAINERS) for a in _ancestors(m, parent))
        and not any(id(a) in inside_blocks for a in _ancestors(m, parent))
    ]
    fused_final = None
    for module in model.modules():
        if type(module).__name__ == "MixerModel" and getattr(module, "fused_add_norm", False):
            layers = getattr(module, "layers", None)
            if layers is not None and len(layers) and id(layers[-1]) in block_ids:
                fused_final = (layers[-1], module)
                final_norms = [m for m in final_norms if m is not getattr(module, "norm_f", None)]
    vocab = vocab or (lm_heads[0].out_features if lm_heads else None)
    return ModelStructure(root=model, mixers=sites, embeddings=embeddings, lm_heads=lm_heads,
                          final_norms=final_norms, fused_final_norm=fused_final, unsupported=unsupported,
                          d_model=sites[0].dims.d_model, vocab_size=vocab)


def _ancestors(module: nn.Module, parent: dict[int, nn.Module]) -> list[nn.Module]:
    out = []
    cur = parent.get(id(module))
    while cur is not None:
        out.append(cur)
        cur = parent.get(id(cur))
    return out


def expected_components(structure: ModelStructure) -> list[tuple[int, str]]:
    """Every (layer, component) a run of this model reports, in taxonomy order."""
    keys: list[tuple[int, str]] = []
    for site in structure.mixers:
        keys += [(site.layer, c) for c in site.adapter.components()]
        if site.block is not None:
            keys.append((site.layer, "norm"))
            if not site.fused_add_norm:
                keys.append((site.layer, "residual"))
            if site.others:
                keys.append((site.layer, "other"))
    if structure.embeddings:
        keys.append((MODEL_LAYER, "embedding"))
    if structure.final_norms or structure.fused_final_norm:
        keys.append((MODEL_LAYER, "norm"))
    if structure.lm_heads:
        keys.append((MODEL_LAYER, "lm_head"))
    keys.append((MODEL_LAYER, "other"))
    return sorted(set(keys), key=lambda k: (k[0] if k[0] >= 0 else 10**9, component_order(k[1])))

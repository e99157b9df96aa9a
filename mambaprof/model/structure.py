"""Find the layers of a model (Mamba mixers, attention, MLP, MoE, norms), and the model-level modules around them.

A model's layers are the children of its main ModuleList (the one holding the most mixers, or attention
modules for a pure Transformer). Inside each layer, modules are classified by structure: a Mamba mixer
(adapters.recognise: registered, exact class, or transformers-style by structure), attention (q/k/v
projections, or an `...Attention` class), MoE (an `experts` child), MLP (gate/up/down or fc1/fc2
projections), norms; the rest is `other`. A Mamba-like module that no adapter matches is profiled as-is
(its kernels attributed by name rules), with one warning naming it and what could not be matched. Before a
split forward is trusted, it is run once against the module's own forward on a small probe input; a class
whose split does not reproduce its output is profiled as-is too.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from mambaprof.errors import UnsupportedModelError
from mambaprof.model.adapters import SUPPORTED_CLASSES, Mismatch, MixerAdapter, MixerDims, class_path, recognise
from mambaprof.taxonomy import MODEL_LAYER, component_order

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
class AsIsMixer:
    """A Mamba-like module no adapter could split: profiled as-is, kernels attributed by name rules."""

    layer: int
    name: str
    module: nn.Module
    family: str
    reason: str

    @property
    def mixer_class(self) -> str:
        """`module.Class` of the module."""
        return class_path(self.module)


@dataclass
class LayerSite:
    """One layer (a child of the model's main ModuleList) and what is in it.

    kind: the layer's kinds joined by `+` in a fixed order: mamba1/mamba2, attention, mlp, moe
        (e.g. `mamba2+attention+mlp` for a Falcon-H1 layer, `attention+mlp` for a Llama layer).
    mixer: the recognised Mamba mixer (split forward), or None; asis: Mamba-like modules profiled as-is.
    attention / mlp / moe / norms / others: modules marked with a window of that component.
    shared: ids of modules that are also used by other layers (Zamba2's shared transformer).
    """

    layer: int
    name: str
    block: nn.Module | None
    kind: str = ""
    mixer: MixerSite | None = None
    asis: list[AsIsMixer] = field(default_factory=list)
    attention: list[nn.Module] = field(default_factory=list)
    mlp: list[nn.Module] = field(default_factory=list)
    moe: list[nn.Module] = field(default_factory=list)
    norms: list[nn.Module] = field(default_factory=list)
    others: list[nn.Module] = field(default_factory=list)
    fused_add_norm: bool = False

    @property
    def family(self) -> str:
        """The Mamba family of this layer (`mamba1`/`mamba2`), `hybrid` without a Mamba mixer."""
        if self.mixer is not None:
            return self.mixer.dims.family
        if self.asis:
            return self.asis[0].family
        return "none"


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
    layers: list[LayerSite] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def asis(self) -> list[AsIsMixer]:
        """Mamba-like modules profiled as-is (no adapter, or a split that did not reproduce the output)."""
        return [a for layer in self.layers for a in layer.asis]

    @property
    def layer_kinds(self) -> dict[int, str]:
        """layer -> kind."""
        return {ls.layer: ls.kind for ls in self.layers}

    @property
    def family(self) -> str:
        """`mamba1`, `mamba2`, `mixed` (both), or `transformer` (no Mamba mixer at all)."""
        fams = {s.dims.family for s in self.mixers} | {a.family for a in self.asis}
        if not fams:
            return "transformer"
        return fams.pop() if len(fams) == 1 else "mixed"

    @property
    def mixer_classes(self) -> list[str]:
        """Distinct mixer classes in model order."""
        return list(dict.fromkeys(s.mixer_class for s in self.mixers))

    @property
    def fused_norm_layers(self) -> set[int]:
        """Layers whose block norm is fused with the residual add."""
        return {ls.layer for ls in self.layers if ls.fused_add_norm}


_ATTENTION_NAME = re.compile(r"(Attention|Attn|^MHA)$")
_MLP_NAME = re.compile(r"(MLP|Mlp|FeedForward|FFN|Ffn)$")
_MOE_NAME = re.compile(r"(MoE|Moe|SparseMoeBlock|MixtureOfExperts)$")
_ATTENTION_PROJ = (("q_proj", "k_proj", "v_proj"), ("qkv_proj",), ("Wqkv",), ("query_key_value",), ("c_attn",))
_MLP_PROJ = (("gate_proj", "up_proj", "down_proj"), ("up_proj", "down_proj"), ("fc1", "fc2"), ("w1", "w2"),
             ("input_linear", "output_linear"), ("c_fc", "c_proj"), ("dense_h_to_4h", "dense_4h_to_h"))
_MLP_ATTR_NAMES = ("mlp", "feed_forward", "ffn", "ff", "mlp_block")
#: layer kinds in the order they are joined
KIND_ORDER = ("mamba1", "mamba2", "attention", "mlp", "moe")


def _has(module: nn.Module, names: tuple[str, ...]) -> bool:
    return all(isinstance(getattr(module, n, None), nn.Module) for n in names)


def is_attention(module: nn.Module) -> bool:
    """Attention by structure: q/k/v (or fused qkv) projections, or an `...Attention` class with a Linear."""
    if any(_has(module, names) for names in _ATTENTION_PROJ):
        return True
    return bool(_ATTENTION_NAME.search(type(module).__name__)) and any(
        isinstance(m, nn.Linear) for m in module.modules())


def is_moe(module: nn.Module) -> bool:
    """Mixture of experts by structure: an `experts` child (with a router/gate), or a MoE class name."""
    if isinstance(getattr(module, "experts", None), nn.Module):
        return True
    return bool(_MOE_NAME.search(type(module).__name__)) and any(True for _ in module.parameters())


def is_mlp(module: nn.Module) -> bool:
    """A dense feed-forward by structure: gate/up/down or fc1/fc2-style projections, or an `...MLP` class."""
    if any(_has(module, names) for names in _MLP_PROJ) and not is_attention(module):
        return True
    return bool(_MLP_NAME.search(type(module).__name__)) and any(isinstance(m, nn.Linear) for m in module.modules())


def _classify(module: nn.Module) -> tuple[str, object] | None:
    found = recognise(module)
    if isinstance(found, MixerAdapter):
        return "mixer", found
    if isinstance(found, Mismatch):
        return "asis", found
    if is_attention(module):
        return "attention", None
    if is_moe(module):
        return "moe", None
    if is_mlp(module):
        return "mlp", None
    if is_norm(module):
        return "norm", None
    return None


def _contains_classified(module: nn.Module) -> bool:
    return any(_classify(m) is not None for m in module.modules() if m is not module)


#: probe length (tokens) of the split-forward check
PROBE_TOKENS = 8


def probe_split(adapter: MixerAdapter, module: nn.Module) -> str | None:
    """Run the split forward against the module's own forward on a small random input (batch 1,
    PROBE_TOKENS tokens, the module's dtype and device); None when they agree, else why not."""
    try:
        param = next(module.parameters())
    except StopIteration:
        return "it has no parameters"
    if param.device.type == "meta":
        return None
    dims = adapter.dims(module)
    gen = torch.Generator(device="cpu").manual_seed(1234)
    x = torch.randn(1, PROBE_TOKENS, dims.d_model, generator=gen).to(device=param.device, dtype=param.dtype)
    from contextlib import nullcontext

    try:
        with torch.inference_mode():
            ref = module(x)
            out = adapter.split_forward(module, lambda _c: nullcontext(), (x,), {})
    except Exception as exc:  # noqa: BLE001 - any failure of the split means: profile as-is
        return f"the split forward raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if out is None:
        return None
    ref_t = ref[0] if isinstance(ref, tuple) else ref
    if not isinstance(ref_t, torch.Tensor) or ref_t.shape != out.shape:
        return "the split forward's output has another shape"
    err = float((ref_t.float() - out.float()).abs().max())
    scale = float(ref_t.float().abs().max()) or 1.0
    tol = 1e-5 if param.dtype == torch.float32 else 2e-2
    if not err / scale <= tol:
        return f"the split forward does not reproduce its output (relative error {err / scale:.2e})"
    return None


def _main_layer_list(model: nn.Module) -> nn.ModuleList | None:
    best, best_score = None, 0
    for module in model.modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        score = 0
        for child in module:
            kinds = {k for m in child.modules() if (c := _classify(m)) is not None for k in (c[0],)}
            if kinds & {"mixer", "asis"}:
                score += 1_000
            elif "attention" in kinds:
                score += 1
        if score > best_score:
            best, best_score = module, score
    return best


def _walk_block(block: nn.Module, site: LayerSite, model_name: dict[int, str], found_mixers: list,
                mixer_ids: set[int]) -> None:
    for child_name, child in block.named_children():
        c = _classify(child)
        if c is None and child_name in _MLP_ATTR_NAMES and any(isinstance(m, nn.Linear) for m in child.modules()):
            c = ("mlp", None)  # e.g. an nn.Sequential feed-forward called `mlp`
        if c is None:
            if _contains_classified(child):
                _walk_block(child, site, model_name, found_mixers, mixer_ids)
            else:
                site.others.append(child)
            continue
        kind, what = c
        if kind == "mixer":
            found_mixers.append((child, what))
        elif kind == "asis":
            found_mixers.append((child, what))
        elif kind == "attention":
            site.attention.append(child)
        elif kind == "moe":
            site.moe.append(child)
        elif kind == "mlp":
            site.mlp.append(child)
        else:
            site.norms.append(child)


def discover(model: nn.Module, probe: bool = True) -> ModelStructure:
    """Walk the model: its layers (mixers, attention, MLP, MoE, norms), embeddings, lm_head, final norm.

    probe: check each recognised mixer class's split forward against its own forward once (see probe_split);
        a class that fails is profiled as-is, with a warning.
    Raises UnsupportedModelError when the model has neither a Mamba-like layer nor attention layers.
    """
    parent: dict[int, nn.Module] = {}
    names: dict[int, str] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        names.setdefault(id(module), name)
        for child in module.children():
            parent.setdefault(id(child), module)

    layer_list = _main_layer_list(model)
    blocks: list[tuple[str, nn.Module | None, list[tuple[nn.Module, object]]]] = []
    sites_by_layer: list[LayerSite] = []
    if layer_list is not None:
        for i, block in enumerate(layer_list):
            site = LayerSite(layer=i, name=names.get(id(block), str(i)), block=block)
            found: list[tuple[nn.Module, object]] = []
            c = _classify(block)
            if c is not None and c[0] in ("mixer", "asis"):
                found.append((block, c[1]))
                site.block = None
            else:
                _walk_block(block, site, names, found, set())
            sites_by_layer.append(site)
            blocks.append((site.name, site.block, found))
    in_layers = {id(m) for _, b, f in blocks for m in ([b] if b is not None else [x for x, _ in f])}
    inside_layers: set[int] = set()
    for _, b, f in blocks:
        for root in ([b] if b is not None else [x for x, _ in f]):
            inside_layers.update(id(m) for m in root.modules())
    # mixers outside the main layer list (or models without one): each its own layer, block = its parent
    extra: list[tuple[str, nn.Module]] = []
    seen_mixer: set[int] = set()
    for name, module in model.named_modules():
        if id(module) in inside_layers or any(id(a) in seen_mixer for a in _ancestors(module, parent)):
            continue
        c = _classify(module)
        if c is not None and c[0] in ("mixer", "asis"):
            seen_mixer.add(id(module))
            extra.append((name, module))
    for name, module in extra:
        block = parent.get(id(module))
        if block is None or block is model or isinstance(block, _CONTAINERS) or id(block) in in_layers:
            block = None
        site = LayerSite(layer=len(sites_by_layer), name=name, block=block)
        found = [(module, recognise(module))]
        if block is not None:
            for child in block.children():
                if child is module:
                    continue
                (site.norms if is_norm(child) else site.others).append(child)
        sites_by_layer.append(site)
        blocks.append((name, block, found))

    warn: list[str] = []
    unsupported: list[str] = []
    probed: dict[str, str | None] = {}
    mixers: list[MixerSite] = []
    for site, (_, block, found) in zip(sites_by_layer, blocks, strict=True):
        for module, what in found:
            mname = names.get(id(module), site.name)
            if isinstance(what, MixerAdapter) and site.mixer is None:
                path = class_path(module)
                if probe and path not in probed:
                    probed[path] = probe_split(what, module)
                failed = probed.get(path) if probe else None
                if failed is None:
                    ms = MixerSite(layer=site.layer, name=mname, module=module, adapter=what, dims=what.dims(module),
                                   block=block, norms=site.norms, others=site.others)
                    site.mixer = ms
                    mixers.append(ms)
                    continue
                what = Mismatch(failed, what.family)
            if isinstance(what, MixerAdapter):  # a second recognised mixer in one layer: as-is
                what = Mismatch("a second Mamba mixer in the same layer", what.family)
            assert isinstance(what, Mismatch)
            site.asis.append(AsIsMixer(site.layer, mname, module, what.family_guess, what.reason))
            unsupported.append(f"{mname or '<root>'} ({class_path(module)})")
        if block is not None:
            site.fused_add_norm = bool(getattr(block, "fused_add_norm", False))
        kinds = {site.family} if (site.mixer is not None or site.asis) else set()
        kinds |= {k for k, mods in (("attention", site.attention), ("mlp", site.mlp), ("moe", site.moe)) if mods}
        site.kind = "+".join(k for k in KIND_ORDER if k in kinds) or "other"
    reported: set[str] = set()
    for a in (a for s in sites_by_layer for a in s.asis):
        key = f"{a.mixer_class}: {a.reason}"
        line = (f"layer {a.layer} {a.name} ({a.mixer_class}): {a.reason}; profiled as-is "
                "(kernels attributed by name rules)")
        if key in reported:
            line = f"layer {a.layer} {a.name} ({a.mixer_class}): profiled as-is (same reason)"
        reported.add(key)
        warn.append(line)
        warnings.warn(f"mambaprof: {line}", stacklevel=2)

    has_attention = any(s.attention for s in sites_by_layer)
    if not mixers and not any(s.asis for s in sites_by_layer) and not has_attention:
        raise UnsupportedModelError(
            f"{type(model).__name__} has no Mamba mixer and no attention layer mambaprof can find",
            "supported mixer classes: " + ", ".join(SUPPORTED_CLASSES))

    inside_blocks: set[int] = set()
    for s in sites_by_layer:
        roots = [s.block] if s.block is not None else ([s.mixer.module] if s.mixer else []) + [a.module for a in s.asis]
        for root in roots:
            inside_blocks.update(id(m) for m in root.modules())
    block_ids = {id(s.block) for s in sites_by_layer if s.block is not None}

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
    if mixers:
        d_model = mixers[0].dims.d_model
    elif embeddings:
        d_model = embeddings[0].embedding_dim
    else:
        d_model = int(getattr(getattr(model, "config", None), "hidden_size", 0) or 0)
    return ModelStructure(root=model, mixers=mixers, embeddings=embeddings, lm_heads=lm_heads,
                          final_norms=final_norms, fused_final_norm=fused_final, unsupported=unsupported,
                          d_model=d_model, vocab_size=vocab, layers=sites_by_layer, warnings=warn)

def _ancestors(module: nn.Module, parent: dict[int, nn.Module]) -> list[nn.Module]:
    out = []
    cur = parent.get(id(module))
    while cur is not None:
        out.append(cur)
        cur = parent.get(id(cur))
    return out


def expected_components(structure: ModelStructure) -> list[tuple[int, str]]:
    """Every (layer, component) with a marker window in a run of this model, in taxonomy order.

    As-is mixers have no component windows: their kernel-attributed components come from the profiler.
    """
    keys: list[tuple[int, str]] = []
    for ls in structure.layers:
        if ls.mixer is not None:
            keys += [(ls.layer, c) for c in ls.mixer.adapter.components()]
        for comp, mods in (("attention", ls.attention), ("mlp", ls.mlp), ("moe", ls.moe), ("norm", ls.norms),
                           ("other", ls.others)):
            if mods:
                keys.append((ls.layer, comp))
        if ls.block is not None:
            keys.append((ls.layer, "norm" if ls.fused_add_norm else "residual"))
    if structure.embeddings:
        keys.append((MODEL_LAYER, "embedding"))
    if structure.final_norms or structure.fused_final_norm:
        keys.append((MODEL_LAYER, "norm"))
    if structure.lm_heads:
        keys.append((MODEL_LAYER, "lm_head"))
    keys.append((MODEL_LAYER, "other"))
    return sorted(set(keys), key=lambda k: (k[0] if k[0] >= 0 else 10**9, component_order(k[1])))


def layer_rows(structure: ModelStructure) -> list[dict[str, object]]:
    """One `layers` row per layer (without run_id/rank): kind, how its mixer is profiled, decode-cache sizes."""
    from mambaprof.model.counts import attention_dims

    # shared: the same module, or the same (tied) weights, serve attention in several layers (Zamba2)
    owners: dict[int, set[int]] = {}
    for ls in structure.layers:
        for m in ls.attention:
            for key in [id(m), *(id(p) for p in m.parameters())]:
                owners.setdefault(key, set()).add(ls.layer)
    rows: list[dict[str, object]] = []
    for ls in structure.layers:
        site = ls.mixer
        dims = site.dims if site is not None else None
        att = [d for d in (attention_dims(m) for m in ls.attention) if d is not None]
        recipe = getattr(site.adapter, "recipe", None) if site is not None else None
        rows.append({
            "layer": ls.layer, "name": ls.name, "layer_kind": ls.kind,
            "mixer_class": site.mixer_class if site is not None else (ls.asis[0].mixer_class if ls.asis else None),
            "recipe": (recipe.name if recipe is not None else type(site.adapter).__name__) if site is not None
            else None,
            "profiled": "split" if site is not None else ("as-is" if ls.asis else "none"),
            "asis_reason": "; ".join(a.reason for a in ls.asis) or None,
            "d_model": structure.d_model,
            "ssm_state_elems_per_seq": dims.recurrent_state_elems(1) if dims is not None else 0,
            "conv_state_elems_per_seq": dims.conv_state_elems(1) if dims is not None else 0,
            "kv_cache_elems_per_token": sum(d.kv_cache_elems(1, 1) for d in att),
            "attention_heads": att[0].n_heads if att else None,
            "attention_kv_heads": att[0].n_kv_heads if att else None,
            "attention_head_dim": att[0].head_dim if att else None,
            "shared_attention": any(len(owners.get(k, ())) > 1 for m in ls.attention
                                    for k in [id(m), *(id(p) for p in m.parameters())]),
        })
    return rows

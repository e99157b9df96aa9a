"""The component taxonomy: every measurement is attributed to exactly one of these, per layer.

This is data, not scattered strings: collectors, counts and reports all read `COMPONENTS`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Component:
    """One row of the taxonomy.

    name: the identifier used in every table (`components.component`, `kernels.component`).
    scope: `mixer` (inside a Mamba mixer), `block` (inside a layer, outside the mixer) or
        `model` (outside the blocks).
    description: what it covers, in words for people outside the team.
    mamba1 / mamba2: what the component is in each family ("" where it does not exist).
    """

    name: str
    scope: str
    description: str
    mamba1: str
    mamba2: str


COMPONENTS: tuple[Component, ...] = (
    Component(
        "in_proj", "mixer", "Input projection of the mixer (one GEMM).",
        "x, z = in_proj(h): d_model -> 2*d_inner",
        "z, xBC, dt = in_proj(h): d_model -> 2*d_inner + 2*ngroups*d_state + nheads",
    ),
    Component(
        "conv1d", "mixer", "Depthwise causal 1-D convolution with SiLU.",
        "over the d_inner channels of x",
        "over the x, B and C channels (d_inner + 2*ngroups*d_state)",
    ),
    Component(
        "ssm_params", "mixer", "Projections that make the SSM parameters input-dependent.",
        "x_proj (-> dt_rank + 2*d_state) and dt_proj (-> d_inner)",
        "",  # Mamba-2 has none: dt, B, C come out of in_proj
    ),
    Component(
        "ssm_scan", "mixer", "The selective scan with its D skip connection (and discretisation).",
        "selective scan over d_inner x d_state states",
        "SSD chunked scan (chunk cumsum, chunk state, state passing, chunk scan)",
    ),
    Component(
        "gating", "mixer", "Output gating by z.",
        "y * silu(z); fused into the selective-scan kernel on GPU (then reported inside ssm_scan)",
        "gated RMSNorm: rmsnorm(y * silu(z))",
    ),
    Component("out_proj", "mixer", "Output projection of the mixer (one GEMM).", "d_inner -> d_model",
              "d_inner -> d_model"),
    Component("norm", "block", "RMSNorm/LayerNorm before the mixer (and the final norm, layer -1).",
              "block pre-norm", "block pre-norm"),
    Component("residual", "block", "Residual add and dtype casts of the block, outside norm and mixer.",
              "h + mixer(norm(h))", "h + mixer(norm(h))"),
    Component("attention", "block",
              "Attention of hybrid and Transformer layers: QKV and output projections with the attention kernel "
              "(SDPA, flash or eager), rotary embedding and KV layout ops inside the attention module.", "", ""),
    Component("mlp", "block", "Dense feed-forward of a layer (gate/up/down or fc1/fc2 projections and activation).",
              "", ""),
    Component("moe", "block", "Mixture of experts: router and experts of a layer.", "", ""),
    Component("embedding", "model", "Token embedding lookup.", "", ""),
    Component("lm_head", "model", "Output projection to the vocabulary.", "", ""),
    Component("communication", "model",
              "Collective and point-to-point communication kernels (NCCL) of models that run across ranks.",
              "", ""),
    Component("other", "model",
              "Everything else in the forward: modules of a layer that are none of the above (e.g. Zamba2's "
              "adapter linear), glue ops between layers, rotary tables.",
              "", ""),
)

COMPONENT_NAMES: tuple[str, ...] = tuple(c.name for c in COMPONENTS)
MIXER_COMPONENTS: tuple[str, ...] = tuple(c.name for c in COMPONENTS if c.scope == "mixer")
BY_NAME: dict[str, Component] = {c.name: c for c in COMPONENTS}

#: Layer index used for components outside any block (embedding, final norm, lm_head, other).
MODEL_LAYER = -1


def component_order(name: str) -> int:
    """Position of a component in the taxonomy (for sorting tables and plots)."""
    return COMPONENT_NAMES.index(name) if name in BY_NAME else len(COMPONENT_NAMES)


def validate_component(name: str) -> str:
    """Return `name` if it is in the taxonomy, else raise ValueError naming the valid ones."""
    if name not in BY_NAME:
        raise ValueError(f"unknown component {name!r}; the taxonomy has {', '.join(COMPONENT_NAMES)}")
    return name


#: Layer kinds (the `layer_kind` column): a layer's kinds joined by `+` in this order.
LAYER_KINDS: tuple[str, ...] = ("mamba1", "mamba2", "attention", "mlp", "moe")

#: Which layer kind a component's time counts toward in the hybrid view (mixer components: the layer's family).
COMPONENT_KIND: dict[str, str] = {
    "attention": "attention", "mlp": "mlp", "moe": "moe",
    **{c.name: "mamba" for c in COMPONENTS if c.scope == "mixer"},
}

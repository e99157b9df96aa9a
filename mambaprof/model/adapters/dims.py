"""Shapes of a Mamba mixer, the inputs to closed-form counts and to pruning."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class MixerDims:
    """Dimensions of one mixer (counts are per layer).

    family: `mamba1` or `mamba2`.
    d_model: width of the residual stream; d_inner: width inside the mixer (expand x d_model).
    d_state: SSM state size N (per channel for Mamba-1, per group for Mamba-2).
    d_conv: causal conv kernel width.
    dt_rank: rank of the dt projection (Mamba-1).
    nheads, headdim, ngroups, chunk_size: Mamba-2's head layout and SSD chunk length.
    """

    family: str
    d_model: int
    d_inner: int
    d_state: int
    d_conv: int
    dt_rank: int = 0
    nheads: int = 0
    headdim: int = 0
    ngroups: int = 1
    chunk_size: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for JSON)."""
        return asdict(self)

    @property
    def conv_channels(self) -> int:
        """Channels the causal conv runs over."""
        if self.family == "mamba2":
            return self.d_inner + 2 * self.ngroups * self.d_state
        return self.d_inner

    @property
    def in_proj_out(self) -> int:
        """Output features of in_proj."""
        if self.family == "mamba2":
            return 2 * self.d_inner + 2 * self.ngroups * self.d_state + self.nheads
        return 2 * self.d_inner

    def recurrent_state_elems(self, batch: int) -> int:
        """Elements of the SSM state a decode cache holds for this layer.

        Mamba-1: batch x d_inner x d_state. Mamba-2: batch x nheads x headdim x d_state.
        """
        if self.family == "mamba2":
            return batch * self.nheads * self.headdim * self.d_state
        return batch * self.d_inner * self.d_state

    def conv_state_elems(self, batch: int) -> int:
        """Elements of the conv state a decode cache holds: batch x conv channels x d_conv."""
        return batch * self.conv_channels * self.d_conv

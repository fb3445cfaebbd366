"""Model change of the modified decoder: optional LayerNorm and input dropout on the GRU input windows.

The seed changelog says only "use_layer_norm: True, input_dropout: 0.1" without a
location; we normalise the unfolded (B, T_out, D*K) windows right before the GRU.
Everything else is upstream's GRUDecoder, inherited. The extra layers are created
after upstream's construction and neither LayerNorm nor Dropout draws random numbers
at init, so seeded weights of the shared parts are unchanged; with both off no module
is added and the state_dict is upstream's.
"""
from __future__ import annotations

from torch import nn

from reference.neural_seq_decoder.model import GRUDecoder, build_model


class ModGRUDecoder(GRUDecoder):
    """GRUDecoder plus ``layerNorm`` / ``inputDropout`` between frontend and GRU."""

    def __init__(self, *args, layer_norm: bool = False, input_dropout: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        if layer_norm:
            self.layerNorm = nn.LayerNorm(self.neural_dim * self.kernelLen)
        if input_dropout > 0:
            self.inputDropout = nn.Dropout(input_dropout)

    def head(self, windows):
        if hasattr(self, "layerNorm"):
            windows = self.layerNorm(windows)
        if hasattr(self, "inputDropout"):
            windows = self.inputDropout(windows)
        return super().head(windows)


def build_mod_model(args: dict, n_days: int) -> ModGRUDecoder:
    """Same construction as the reference's build_model, plus the two optional layers."""
    return build_model(args, n_days, cls=ModGRUDecoder, layer_norm=args["layer_norm"],
                       input_dropout=args["input_dropout"])

"""GaussianSmoothing and GRUDecoder: upstream's model, built in upstream's order so seeded weights match.

Construction order (fact sheet 4.2) decides which random numbers each tensor receives:
smoothing kernel (no RNG), dayWeights randn (then overwritten by identities), GRU
(default reset, then orthogonal/xavier re-init), the never-used inpLayer{i} Linear
layers (their kaiming init consumes RNG), and finally the output Linear layer.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .config import SMOOTH_KERNEL_SIZE


def gaussian_kernel(kernel_size: int, sigma: float) -> torch.Tensor:
    """Normalized float32 Gaussian taps centred at (kernel_size - 1) / 2 (9.5 for 20 taps)."""
    if sigma <= 0:
        # Upstream would silently produce a NaN kernel here.
        raise ValueError("gaussianSmoothWidth must be > 0")
    taps = torch.arange(kernel_size, dtype=torch.float32)
    centre = (kernel_size - 1) / 2
    kernel = torch.exp(-0.5 * ((taps - centre) / sigma) ** 2)
    return kernel / kernel.sum()


class GaussianSmoothing(nn.Module):
    """Fixed depthwise smoothing along time; input (B, D, T), output (B, D, T).

    The kernel is a persistent buffer named ``weight`` of shape (D, 1, kernel_size) so
    the state_dict key matches upstream. With an even kernel, PyTorch's "same" padding
    puts 9 zeros left and 10 right, so the effective centre is half a bin in the future.
    """

    def __init__(self, channels: int, kernel_size: int, sigma: float):
        super().__init__()
        kernel = gaussian_kernel(kernel_size, sigma)
        self.register_buffer("weight", kernel.view(1, 1, -1).repeat(channels, 1, 1))
        self.groups = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.weight, groups=self.groups, padding="same")


class GRUDecoder(nn.Module):
    """Smoothing -> day affine map -> softsign -> strided windows -> GRU -> linear logits.

    ``forward`` returns raw logits (B, T_out, nClasses + 1); there is no softmax. The
    forward is split into ``frontend`` (up to the unfolded windows) and ``head`` (GRU and
    output layer) so a subclass can insert layers between them without copying either.
    The GRU is run without packing: padded frames are processed like real ones.
    """

    def __init__(
        self,
        neural_dim: int,
        n_classes: int,
        hidden_dim: int,
        layer_dim: int,
        nDays: int = 24,
        dropout: float = 0,
        device: str = "cuda",
        strideLen: int = 4,
        kernelLen: int = 14,
        gaussianSmoothWidth: float = 0,
        bidirectional: bool = False,
    ):
        super().__init__()
        self.neural_dim = neural_dim
        self.n_classes = n_classes
        self.hidden_dim = hidden_dim
        self.layer_dim = layer_dim
        self.nDays = nDays
        self.device = device
        self.strideLen = strideLen
        self.kernelLen = kernelLen
        self.bidirectional = bidirectional

        # Step 1: parameter-free modules.
        self.inputLayerNonlinearity = nn.Softsign()
        self.unfolder = nn.Unfold((kernelLen, 1), dilation=1, padding=0, stride=strideLen)
        # Step 2: deterministic smoothing kernel.
        self.gaussianSmoother = GaussianSmoothing(neural_dim, SMOOTH_KERNEL_SIZE, gaussianSmoothWidth)
        # Step 3: the randn draw is consumed even though identities overwrite it; it
        # must stay so every later tensor receives upstream's random numbers.
        self.dayWeights = nn.Parameter(torch.randn(nDays, neural_dim, neural_dim))
        self.dayBias = nn.Parameter(torch.zeros(nDays, 1, neural_dim))
        with torch.no_grad():
            for day in range(nDays):
                self.dayWeights[day] = torch.eye(neural_dim)
        # Step 4: GRU with its own default reset.
        self.gru_decoder = nn.GRU(
            neural_dim * kernelLen,
            hidden_dim,
            layer_dim,
            batch_first=True,
            dropout=dropout,
            bidirectional=bidirectional,
        )
        # Step 5: re-init in named_parameters order; biases keep the default uniform.
        for name, param in self.gru_decoder.named_parameters():
            if "weight_hh" in name:
                nn.init.orthogonal_(param)
            elif "weight_ih" in name:
                nn.init.xavier_uniform_(param)
        # Step 6: per-day Linear layers that forward never uses. They stay because
        # their init consumes RNG and they appear in parameters() and the state_dict.
        for day in range(nDays):
            setattr(self, f"inpLayer{day}", nn.Linear(neural_dim, neural_dim))
        for day in range(nDays):
            layer = getattr(self, f"inpLayer{day}")
            layer.weight = nn.Parameter(layer.weight + torch.eye(neural_dim))
        # Step 7: output layer; blank is class 0, hence n_classes + 1 units.
        directions = 2 if bidirectional else 1
        self.fc_decoder_out = nn.Linear(hidden_dim * directions, n_classes + 1)

    def frontend(self, neuralInput: torch.Tensor, dayIdx: torch.Tensor) -> torch.Tensor:
        """(B, T, D) features -> (B, T_out, D*K) windows, channel-major inside a window."""
        smoothed = self.gaussianSmoother(neuralInput.permute(0, 2, 1)).permute(0, 2, 1)
        # index_select backpropagates a dense gradient over all days (zeros for days not
        # in the batch), so Adam updates every day's map each step, as upstream does.
        day_weights = torch.index_select(self.dayWeights, 0, dayIdx)
        day_bias = torch.index_select(self.dayBias, 0, dayIdx)
        transformed = torch.einsum("btd,bdk->btk", smoothed, day_weights) + day_bias
        transformed = self.inputLayerNonlinearity(transformed)
        windows = self.unfolder(transformed.permute(0, 2, 1).unsqueeze(3))
        return windows.permute(0, 2, 1)

    def head(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, T_out, D*K) windows -> (B, T_out, nClasses + 1) logits."""
        directions = 2 if self.bidirectional else 1
        h0 = torch.zeros(
            self.layer_dim * directions,
            windows.size(0),
            self.hidden_dim,
            device=windows.device,
        )
        hidden, _ = self.gru_decoder(windows, h0)
        return self.fc_decoder_out(hidden)

    def forward(self, neuralInput: torch.Tensor, dayIdx: torch.Tensor) -> torch.Tensor:
        return self.head(self.frontend(neuralInput, dayIdx))


def build_model(args: dict, n_days: int, cls: type = None, **extra) -> GRUDecoder:
    """Construct from config keys on the CPU generator, then move to ``args['device']``.

    ``cls`` and ``extra`` let a subclass (the modified decoder) reuse the same construction order."""
    model = (cls or GRUDecoder)(
        neural_dim=args["nInputFeatures"],
        n_classes=args["nClasses"],
        hidden_dim=args["nUnits"],
        layer_dim=args["nLayers"],
        nDays=n_days,
        dropout=args["dropout"],
        device=args["device"],
        strideLen=args["strideLen"],
        kernelLen=args["kernelLen"],
        gaussianSmoothWidth=args["gaussianSmoothWidth"],
        bidirectional=args["bidirectional"],
        **extra,
    )
    return model.to(args["device"])

"""The hashing network shared by both modalities (docs/papers.md §1.2).

``mlp`` is the paper's ``dim -> hidden -> hidden -> n_bits``. ``residual`` adds a linear path straight from the
input to the outputs; training initialises it at a known good hashing of the input (docs/clip4hashing.md,
"Per-modality statistics") and the MLP's output layer at zero, so the MLP learns a correction.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

# Parameter names in the order of the forward pass; they are the tensor names in weights.safetensors.
PARAMETER_NAMES = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias")
LINEAR_PATH = "linear.weight"


def parameter_names(network: Literal["mlp", "residual"]) -> tuple[str, ...]:
    return PARAMETER_NAMES + ((LINEAR_PATH,) if network == "residual" else ())


class HashNet(nn.Module):
    """Two ReLU hidden layers (optional dropout after each) and a linear output of ``n_bits`` units, plus the
    optional linear path.

    The output ``h`` is continuous; the min-max layer turns it into bits. The same instance embeds
    videos and captions (one network for both modalities is the method's point).
    """

    def __init__(self, dim: int, hidden: int, n_bits: int, dropout: float = 0.0, residual: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, n_bits)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(dim, n_bits, bias=False) if residual else None

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        hidden = self.dropout(torch.relu(self.fc1(embeddings)))
        hidden = self.dropout(torch.relu(self.fc2(hidden)))
        out = self.fc3(hidden)
        return out if self.linear is None else out + self.linear(embeddings)

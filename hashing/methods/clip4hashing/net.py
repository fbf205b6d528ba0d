"""The hashing network shared by both modalities: ``dim -> hidden -> hidden -> n_bits`` (docs/methods.md §1.2)."""

from __future__ import annotations

import torch
from torch import nn

# Parameter names in the order of the forward pass; they are the tensor names in weights.safetensors.
PARAMETER_NAMES = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias")


class HashNet(nn.Module):
    """Two ReLU hidden layers (optional dropout after each) and a linear output of ``n_bits`` units.

    The output ``h`` is continuous; the min-max layer turns it into bits. The same instance embeds
    videos and captions (one network for both modalities is the method's point).
    """

    def __init__(self, dim: int, hidden: int, n_bits: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, n_bits)
        self.dropout = nn.Dropout(dropout)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        hidden = self.dropout(torch.relu(self.fc1(embeddings)))
        hidden = self.dropout(torch.relu(self.fc2(hidden)))
        return self.fc3(hidden)

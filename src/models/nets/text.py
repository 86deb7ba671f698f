"""Text encoders for fusion models. Each maps token ids ``(B, L)`` (padding id 0) to per-token
states ``(B, L, dim)`` and one pooled vector ``(B, dim)``, and exposes ``dim``."""

from __future__ import annotations

import torch
from torch import nn

from src.core.errors import ConfigError, describe
from src.core.weights import hf_from_pretrained
from src.models.nets.attention import EncoderLayer, SinusoidalPositions


def masked_mean(states: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """Mean of ``states`` (B, L, D) over the positions where ``pad`` (B, L) is False."""
    keep = (~pad).unsqueeze(-1).to(states.dtype)
    return (states * keep).sum(1) / keep.sum(1).clamp(min=1)


class RNNTextEncoder(nn.Module):
    """Embedding + (bi)GRU/LSTM; pooled = the last layer's final hidden states of both directions,
    read at each sequence's true length (packed sequences skip the padding)."""

    def __init__(self, vocab_size: int, dim: int = 128, cell: str = "gru", num_layers: int = 1,
                 bidirectional: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell={cell!r} is not one of gru, lstm")
        directions = 2 if bidirectional else 1
        if dim % directions:
            raise ValueError(f"dim={dim} must be even for a bidirectional encoder")
        self.dim, self.cell = dim, cell
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(dim, dim // directions, num_layers, batch_first=True, bidirectional=bidirectional,
                       dropout=dropout if num_layers > 1 else 0.0)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(states (B, L, dim), pooled (B, dim), pad (B, L))``."""
        pad = tokens == 0
        lengths = (~pad).sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(tokens), lengths, batch_first=True, enforce_sorted=False)
        out, hidden = self.rnn(packed)
        hidden = hidden[0] if self.cell == "lstm" else hidden
        states, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=tokens.shape[1])
        directions = 2 if self.rnn.bidirectional else 1
        pooled = hidden[-directions:].transpose(0, 1).flatten(1)  # last layer, all directions
        return states, pooled, pad


class TransformerTextEncoder(nn.Module):
    """Embedding + sinusoidal positions + pre-LN encoder layers; pooled = masked mean."""

    def __init__(self, vocab_size: int, dim: int = 128, num_heads: int = 4, num_layers: int = 2,
                 ff_hidden: int = 256, dropout: float = 0.1, max_len: int = 512) -> None:
        super().__init__()
        self.dim = dim
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.positions = SinusoidalPositions(dim, max_len)
        self.layers = nn.ModuleList(EncoderLayer(dim, num_heads, ff_hidden, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pad = tokens == 0
        x = self.positions(self.embed(tokens) * self.dim**0.5)
        for layer in self.layers:
            x = layer(x, key_padding_mask=pad)
        x = self.norm(x)
        return x, masked_mean(x, pad), pad


class HFTextEncoder(nn.Module):
    """A pretrained Hugging Face encoder (``AutoModel``) by hub name or local folder, e.g.
    ``bert-base-uncased`` for online users; pooled = masked mean of the last hidden states.
    Pair it with the same tokenizer (``data.tokenizer``), whose padding id must be 0."""

    def __init__(self, name_or_path: str, freeze: bool = False) -> None:
        super().__init__()
        from transformers import (
            AutoModel,  # imported here: slow to import, needed by this encoder only
        )

        try:
            self.model, self.load_report = hf_from_pretrained(AutoModel, name_or_path)  # train.py saves its table
        except OSError as e:
            raise ConfigError(f"text encoder {name_or_path!r} could not be loaded ({describe(e)}); give a local "
                              "model folder or go online") from e
        self.dim = self.model.config.hidden_size
        self.model.requires_grad_(not freeze)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pad = tokens == 0
        states = self.model(input_ids=tokens, attention_mask=(~pad).long()).last_hidden_state
        return states, masked_mean(states, pad), pad

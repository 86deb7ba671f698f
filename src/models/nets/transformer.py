"""Encoder-decoder Transformer (Vaswani et al. 2017) for sequence-to-sequence tasks, pre-LN,
with one embedding matrix shared by encoder, decoder and output layer."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from src.models.nets.attention import DecoderLayer, EncoderLayer, SinusoidalPositions
from src.models.nets.decoding import Seq2SeqOutput, State


class TransformerSeq2Seq(nn.Module):
    """Pre-LN encoder-decoder on ``F.scaled_dot_product_attention`` with sinusoidal positions.

    Tied embeddings (Press & Wolf 2017) save ``vocab_size x dim`` parameters twice over and help
    small-data training. Implements the incremental interface of :mod:`decoding` (``encode``,
    ``step``) with a per-layer key/value cache. ``attention_dropout`` (None: ``dropout``) drops
    attention weights (see :class:`~src.models.nets.attention.EncoderLayer`).
    """

    def __init__(self, vocab_size: int, pad_id: int, bos_id: int, eos_id: int, dim: int = 512, num_heads: int = 8,
                 encoder_layers: int = 6, decoder_layers: int = 6, ff_hidden: int = 2048, dropout: float = 0.1,
                 max_len: int = 1024, attention_dropout: float | None = None) -> None:
        super().__init__()
        self.pad_id, self.bos_id, self.eos_id, self.dim, self.vocab_size = pad_id, bos_id, eos_id, dim, vocab_size
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        # embeddings are scaled by sqrt(dim) on input, so N(0, 1/dim) keeps both uses unit-scale
        nn.init.normal_(self.embed.weight, std=dim ** -0.5)
        with torch.no_grad():
            self.embed.weight[pad_id].zero_()
        self.positions = SinusoidalPositions(dim, max_len)
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.ModuleList(EncoderLayer(dim, num_heads, ff_hidden, dropout, attention_dropout)
                                     for _ in range(encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(dim, num_heads, ff_hidden, dropout, attention_dropout)
                                     for _ in range(decoder_layers))
        # pre-LN leaves the residual stream unnormalised: one final LayerNorm per stack
        self.encoder_norm, self.decoder_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def _embed(self, tokens: torch.Tensor, offset: int = 0) -> torch.Tensor:
        return self.drop(self.positions(self.embed(tokens) * math.sqrt(self.dim), offset))

    def encode(self, source: torch.Tensor) -> State:
        """Encoder memory as cross-attention keys/values per decoder layer, plus empty
        self-attention caches."""
        pad = source == self.pad_id
        x = self._embed(source)
        for layer in self.encoder:
            x = layer(x, key_padding_mask=pad)
        memory = self.encoder_norm(x)
        state: State = {"memory_padding": pad}
        for i, layer in enumerate(self.decoder):
            state[f"memory_k{i}"], state[f"memory_v{i}"] = layer.cross_attn.project_kv(memory)
            empty = state[f"memory_k{i}"][:, :, :0]
            state[f"self_k{i}"], state[f"self_v{i}"] = empty, empty
        return state

    def _decode(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Logits (B, T, V) of the positions after those cached in ``state``, and the new state."""
        x = self._embed(tokens, offset=state["self_k0"].shape[2] if self.decoder else 0)
        new = dict(state)
        for i, layer in enumerate(self.decoder):
            past = (state[f"self_k{i}"], state[f"self_v{i}"]) if state[f"self_k{i}"].shape[2] else None
            x, (new[f"self_k{i}"], new[f"self_v{i}"]) = layer(
                x, (state[f"memory_k{i}"], state[f"memory_v{i}"]), state["memory_padding"], past=past)
        return self.decoder_norm(x) @ self.embed.weight.T, new

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> Seq2SeqOutput:
        """Teacher forcing: the decoder reads ``bos`` + ``target[:, :-1]`` and predicts ``target``."""
        decoder_input = F.pad(target[:, :-1], (1, 0), value=self.bos_id)
        logits, _ = self._decode(decoder_input, self.encode(source))
        return Seq2SeqOutput(logits)  # the loss normalises: no second log_softmax over (B, T, V)

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        logits, state = self._decode(tokens[:, None], state)
        return logits[:, 0].log_softmax(-1), state

"""Bidirectional-LSTM encoder and attention LSTM decoder, with the pointer-generator copy
mechanism and coverage of See et al. 2017 ("Get To The Point")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from src.models.nets.decoding import Seq2SeqOutput, State

ATTENTIONS = ("bahdanau", "luong")


class PointerGeneratorLSTM(nn.Module):
    """Seq2seq LSTM with attention (``bahdanau``: additive, Bahdanau et al. 2015; ``luong``:
    bilinear "general", Luong et al. 2015) and input feeding.

    ``pointer``: the output mixes the vocabulary distribution with the attention over source
    tokens, weighted by a learned p_gen, so rare source words can be copied. With a byte-level
    BPE every source token is in the vocabulary, so copying scatters into the fixed vocabulary (no
    per-article extended vocabulary is needed). ``coverage``: the running sum of past attention
    enters the attention scores, and ``coverage_weight * sum_i min(a_t, c_t)`` per target token
    is returned as the auxiliary loss, discouraging repeated attention (hence repetition).
    Implements the incremental interface of :mod:`decoding`.
    """

    def __init__(self, vocab_size: int, pad_id: int, bos_id: int, eos_id: int, embed_dim: int = 128,
                 hidden: int = 256, attention: str = "bahdanau", pointer: bool = True, coverage: bool = False,
                 coverage_weight: float = 1.0, dropout: float = 0.0) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention='{attention}'; choose one of {ATTENTIONS}")
        self.pad_id, self.bos_id, self.eos_id, self.vocab_size = pad_id, bos_id, eos_id, vocab_size
        self.attention, self.pointer, self.coverage, self.coverage_weight = attention, pointer, coverage, coverage_weight
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.LSTM(embed_dim, hidden, batch_first=True, bidirectional=True)
        # the decoder starts from the encoder's final states, both directions reduced to one
        self.reduce_h, self.reduce_c = nn.Linear(2 * hidden, hidden), nn.Linear(2 * hidden, hidden)
        if attention == "bahdanau":
            self.memory_proj = nn.Linear(2 * hidden, 2 * hidden, bias=False)
            self.query_proj = nn.Linear(2 * hidden, 2 * hidden)  # decoder state s_t = [h; c]
            self.score = nn.Linear(2 * hidden, 1, bias=False)
            self.coverage_proj = nn.Linear(1, 2 * hidden, bias=False)
        else:
            self.memory_proj = nn.Linear(2 * hidden, hidden, bias=False)
            self.coverage_scale = nn.Parameter(torch.zeros(()))
        self.input_proj = nn.Linear(embed_dim + 2 * hidden, embed_dim)  # input feeding: [y_{t-1}; context_{t-1}]
        self.cell = nn.LSTMCell(embed_dim, hidden)
        # vocabulary distribution: [h; context] -> embed_dim, then the (tied) embedding matrix
        self.out_proj = nn.Linear(3 * hidden, embed_dim)
        self.out_bias = nn.Parameter(torch.zeros(vocab_size))
        self.p_gen = nn.Linear(4 * hidden + embed_dim, 1)  # from [context; h; c; x_t]

    def encode(self, source: torch.Tensor) -> State:
        pad = source == self.pad_id
        lengths = (~pad).sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.drop(self.embed(source)), lengths, batch_first=True,
                                                   enforce_sorted=False)
        out, (h, c) = self.encoder(packed)
        memory, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=source.shape[1])
        h = F.relu(self.reduce_h(torch.cat([h[0], h[1]], dim=-1)))
        c = F.relu(self.reduce_c(torch.cat([c[0], c[1]], dim=-1)))
        return {
            "memory": memory, "memory_features": self.memory_proj(memory), "memory_padding": pad,
            "memory_source": source, "h": h, "c": c, "context": memory.new_zeros(memory.shape[0], memory.shape[2]),
            "coverage": memory.new_zeros(source.shape),
        }

    def _attend(self, state: State, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Attention weights (B, S) of the new decoder state over the source."""
        features, cov = state["memory_features"], state["coverage"]
        if self.attention == "bahdanau":
            e = features + self.query_proj(torch.cat([h, c], dim=-1))[:, None]
            if self.coverage:
                e = e + self.coverage_proj(cov[..., None])
            scores = self.score(torch.tanh(e)).squeeze(-1)
        else:
            scores = (features @ h[:, :, None]).squeeze(-1)
            if self.coverage:
                scores = scores + self.coverage_scale * cov
        return scores.masked_fill(state["memory_padding"], float("-inf")).softmax(-1)

    def _step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State, torch.Tensor]:
        """Log-probs (B, V) of the next token, the new state, and this step's coverage loss (B,)."""
        x = self.input_proj(torch.cat([self.drop(self.embed(tokens)), state["context"]], dim=-1))
        h, c = self.cell(x, (state["h"], state["c"]))
        attn = self._attend(state, h, c)
        context = (attn[:, None] @ state["memory"]).squeeze(1)
        hidden = self.drop(torch.cat([h, context], dim=-1))
        logits = self.out_proj(hidden) @ self.embed.weight.T + self.out_bias
        if self.pointer:
            p_gen = torch.sigmoid(self.p_gen(torch.cat([context, h, c, x], dim=-1)))
            probs = p_gen * logits.softmax(-1)
            probs = probs.scatter_add(1, state["memory_source"], (1 - p_gen) * attn)
            log_probs = probs.clamp(min=1e-12).log()
        else:
            log_probs = logits.log_softmax(-1)
        cov_loss = torch.minimum(attn, state["coverage"]).sum(-1)
        new = dict(state, h=h, c=c, context=context, coverage=state["coverage"] + attn)
        return log_probs, new, cov_loss

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        log_probs, state, _ = self._step(tokens, state)
        return log_probs, state

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> Seq2SeqOutput:
        """Teacher forcing over ``bos`` + ``target[:, :-1]``; the coverage loss is averaged over
        the non-padding target tokens."""
        state = self.encode(source)
        decoder_input = F.pad(target[:, :-1], (1, 0), value=self.bos_id)
        steps, cov_losses = [], []
        for t in range(target.shape[1]):
            log_probs, state, cov = self._step(decoder_input[:, t], state)
            steps.append(log_probs)
            cov_losses.append(cov)
        aux = None
        if self.coverage:
            mask = (target != self.pad_id).float()
            aux = self.coverage_weight * (torch.stack(cov_losses, 1) * mask).sum() / mask.sum().clamp(min=1)
        return Seq2SeqOutput(torch.stack(steps, 1), aux)

"""Visual question answering nets: a CNN image encoder and a text encoder, joined by one of three
fusions, then an answer classifier. Each question points at its image (``image_index``), so
the image encoder runs once per image however many questions are asked about it."""

from __future__ import annotations

import torch
from torch import nn

from src.models.nets.attention import FeedForward, MultiHeadAttention
from src.models.nets.cnn import ConvFeatures
from src.models.nets.text import masked_mean


class ConcatFusion(nn.Module):
    """Late fusion: the pooled image vector and the pooled question vector, concatenated and
    mixed by an MLP (the "CrossModalFusion" of the seeds). It cannot relate question words to
    image regions."""

    def __init__(self, image_channels: int, text_dim: int, dim: int, dropout: float = 0.1, **_: int) -> None:
        super().__init__()
        self.image, self.text = nn.Linear(image_channels, dim), nn.Linear(text_dim, dim)
        self.mix = nn.Sequential(nn.ReLU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim), nn.ReLU())

    def forward(self, fmap: torch.Tensor, image_index: torch.Tensor, states: torch.Tensor,
                pooled: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        image = self.image(fmap.mean(dim=(2, 3)))[image_index]
        return self.mix(torch.cat([image, self.text(pooled)], dim=1))


class CrossAttentionFusion(nn.Module):
    """Question tokens attend to the cells of the CNN feature map (with learned 2-D position
    embeddings), in pre-LN layers of cross-attention + MLP; the attended tokens are mean-pooled.
    The tokens come from the text encoder already in context, so "not" and "red" know of each other.

    Cross-attention does not mix queries, so the tokens of all questions about one image are
    attended to that image's cells in one sequence: keys and values are projected once per image,
    not once per question (easy-VQA asks about 10 questions per image), with the same result.
    """

    def __init__(self, image_channels: int, text_dim: int, dim: int, dropout: float = 0.1, num_heads: int = 4,
                 num_layers: int = 1, num_cells: int = 64) -> None:
        super().__init__()
        self.tokens = nn.Linear(text_dim, dim)
        self.cell_positions = nn.Parameter(torch.zeros(1, num_cells, image_channels))
        nn.init.trunc_normal_(self.cell_positions, std=0.02)
        self.cell_norm = nn.LayerNorm(image_channels)
        self.attn_norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(num_layers))
        self.attns = nn.ModuleList(MultiHeadAttention(dim, num_heads, dropout, context_dim=image_channels)
                                   for _ in range(num_layers))
        self.ff_norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(num_layers))
        self.ffs = nn.ModuleList(FeedForward(dim, 2 * dim, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, fmap: torch.Tensor, image_index: torch.Tensor, states: torch.Tensor,
                pooled: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        cells = fmap.flatten(2).transpose(1, 2)  # (B, h*w, C)
        if cells.shape[1] != self.cell_positions.shape[1]:
            raise ValueError(f"feature map has {cells.shape[1]} cells, the fusion was built for "
                             f"num_cells={self.cell_positions.shape[1]}")
        cells = self.cell_norm(cells + self.cell_positions)
        # slot of each question among the questions about its image: (image, slot) indexes a grid
        counts = torch.bincount(image_index, minlength=len(cells))
        order = torch.argsort(image_index, stable=True)
        slot = torch.empty_like(image_index)
        slot[order] = torch.arange(len(order), device=order.device) - (counts.cumsum(0) - counts)[image_index[order]]
        x = self.tokens(states)  # (Q, L, dim)
        for attn_norm, attn, ff_norm, ff in zip(self.attn_norms, self.attns, self.ff_norms, self.ffs):
            grid = x.new_zeros(len(cells), int(counts.max()), *x.shape[1:])
            grid[image_index, slot] = attn_norm(x)
            attended = attn(grid.flatten(1, 2), context=cells).unflatten(1, grid.shape[1:3])
            x = x + attended[image_index, slot]
            x = x + ff(ff_norm(x))
        return masked_mean(self.norm(x), pad)


class FiLMBlock(nn.Module):
    """Residual conv block whose BatchNorm scale and shift come from the question (FiLM)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(channels, affine=False)

    def forward(self, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.conv(x)) * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
        return x + torch.relu(y)


class FiLMFusion(nn.Module):
    """Feature-wise linear modulation (Perez et al. 2018): the pooled question predicts a
    per-channel scale and shift for each residual block over the image's feature map, so the
    question decides which visual features survive; then global max-pooling."""

    def __init__(self, image_channels: int, text_dim: int, dim: int, dropout: float = 0.1, num_layers: int = 2,
                 **_: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(FiLMBlock(image_channels) for _ in range(num_layers))
        self.film = nn.Linear(text_dim, 2 * image_channels * num_layers)
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(image_channels, dim), nn.ReLU())

    def forward(self, fmap: torch.Tensor, image_index: torch.Tensor, states: torch.Tensor,
                pooled: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        x = fmap[image_index]
        params = self.film(pooled).chunk(2 * len(self.blocks), dim=1)
        for k, block in enumerate(self.blocks):
            x = block(x, params[2 * k], params[2 * k + 1])
        return self.out(x.amax(dim=(2, 3)))


FUSIONS: dict[str, type[nn.Module]] = {"concat": ConcatFusion, "cross_attention": CrossAttentionFusion, "film": FiLMFusion}


class VQANet(nn.Module):
    """``image_encoder`` (a :class:`ConvFeatures`) + ``text_encoder`` (see ``nets/text.py``) +
    the fusion named by ``fusion`` + an MLP over the ``num_answers`` answers."""

    def __init__(self, image_encoder: ConvFeatures, text_encoder: nn.Module, num_answers: int, image_size: int,
                 fusion: str = "cross_attention", dim: int = 128, num_heads: int = 4, num_layers: int = 1,
                 dropout: float = 0.1) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion={fusion!r} is not one of {', '.join(FUSIONS)}")
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        cells = (image_size // image_encoder.downsample) ** 2
        self.fusion = FUSIONS[fusion](image_encoder.out_channels, text_encoder.dim, dim, dropout=dropout,
                                      num_heads=num_heads, num_layers=num_layers, num_cells=cells)
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, num_answers))

    def forward(self, image: torch.Tensor, question: torch.Tensor, image_index: torch.Tensor | None = None) -> torch.Tensor:
        """``image`` (B, C, H, W), ``question`` token ids (Q, L), ``image_index`` (Q,) the row of
        ``image`` each question asks about (default: question i is about image i) -> logits (Q, answers)."""
        if image_index is None:
            image_index = torch.arange(len(question), device=question.device)
        states, pooled, pad = self.text_encoder(question)
        return self.head(self.fusion(self.image_encoder(image), image_index, states, pooled, pad))

"""``LinearLM``: a toy causal LM whose response log-likelihoods are *exactly linear* in the input embeddings.

Each position's state is the sum of the embeddings it attends to (causal, honouring 2-D padding / attention masks,
4-D packed masks, bool or additive, and a transformers cache of earlier positions); every token v ≥ 1 gets the logit
s_v = w_v · h + c, and token 0 absorbs the rest, s_0 = log(1 − Σ_v e^{s_v}), so the logits are already normalised and
log p(v | ·) = s_v. Hence the contrastive objective F = log p(y⁺|x) − log p(y⁻|x) is linear in x: its exact
attribution is x_i · ∇_{x_i} F, which IG reaches at any number of steps and occlusion with the zero mask reaches in
one forward per token.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from torch import nn


class LinearLM(nn.Module):
    def __init__(self, vocab_size: int = 128, hidden: int = 8, seed: int = 0, scale: float = 0.02) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.embed = nn.Embedding(vocab_size, hidden, dtype=torch.float64)
        with torch.no_grad():
            self.embed.weight.copy_(torch.randn(vocab_size, hidden, generator=g, dtype=torch.float64))
        self.head = nn.Parameter(scale * torch.randn(vocab_size, hidden, generator=g, dtype=torch.float64))
        self.bias = -math.log(vocab_size) - 1.0  # Σ_v e^{s_v} stays well below 1
        self.config = SimpleNamespace(_attn_implementation="eager", sliding_window=None)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def forward(self, inputs_embeds, attention_mask=None, position_ids=None, use_cache=False, logits_to_keep=0,
                past_key_values=None, **_):  # fmt: skip
        x = inputs_embeds
        B, T, _ = x.shape
        keys = x  # a position's state sums the embeddings it attends to: its "keys" are the embeddings
        if past_key_values is not None:  # a transformers Cache: earlier positions' embeddings, as one layer's keys
            keys = past_key_values.update(x[:, None], x[:, None], 0)[0][:, 0]  # (B, T_past + T, d)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()[None]  # (1, T, T)
        if attention_mask is None:
            allowed = causal.expand(B, -1, -1)
        elif attention_mask.dim() == 4:  # packed: (B, 1, T, T), bool or additive (0 where allowed)
            m = attention_mask[:, 0]
            allowed = m if m.dtype == torch.bool else m == 0
        else:  # (B, T) padding / attention-zeroing mask on the keys
            allowed = causal & attention_mask.bool()[:, None, :]
        h = allowed.to(x.dtype) @ keys  # (B, T, d)
        s = h @ self.head[1:].T + self.bias  # (B, T, V − 1)
        logits = torch.cat([torch.log1p(-s.exp().sum(-1, keepdim=True)), s], -1)  # (B, T, V), logsumexp = 0
        if isinstance(logits_to_keep, torch.Tensor):
            logits = logits[:, logits_to_keep]
        elif logits_to_keep:
            logits = logits[:, -logits_to_keep:]
        return SimpleNamespace(logits=logits)

    def exact_attribution(self, ids: torch.Tensor, preferred: torch.Tensor, dispreferred: torch.Tensor) -> torch.Tensor:
        """x_i · ∇_{x_i} F (n,) for input ids (n,): each input token reaches every response position's state once."""
        x = self.embed(ids).detach()
        direction = self.head[preferred].sum(0) - self.head[dispreferred].sum(0)  # (d,), sum objective
        return (x @ direction.detach()).float()

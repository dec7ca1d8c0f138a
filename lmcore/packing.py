"""Shared-prompt packing: a question's prompt once, then all its answer choices, in one sequence.

Multiple-choice scoring spends most of its compute re-reading the same prompt once per choice (TruthfulQA: ~8
choices of ~10 tokens after a ~15-token prompt) and projecting every position onto the vocabulary. Here each
question becomes a *group* ``prompt ⊕ choice_1 ⊕ … ⊕ choice_c`` and several groups share one row:

- a block-causal 4-D mask lets each choice see its own prompt and its own earlier tokens only; positions restart
  after the prompt for every choice, so each choice is scored exactly as it would be alone (up to float
  round-off; tested against the padded path on every tiny architecture);
- only the positions that predict an answer token reach the LM head (``logits_to_keep`` as indices);
- no KV cache is used, so the steering hooks see one ordinary forward (``scope`` behaves as in the padded path),
  and the hooks act per token, so packing does not change what is steered.

Rows are filled greedily, whole questions at a time, up to a number of answers per forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class PackedRow:
    """One packed forward.

    Attributes:
        ids: (Q,) token ids of the groups, back to back.
        allowed: (Q, Q) bool, True where query position i may attend to key position j.
        positions: (Q,) position ids (restarting after the prompt for every choice).
        keep: (K,) packed positions whose logits are needed (each predicts one answer token).
        targets: (K,) the answer token predicted from each kept position.
        owner: (K,) index of the scored sequence (flat over the row's groups' choices) each kept position belongs to.
        prompts: (G + 1,) offsets: group g's prompt is at packed positions ``prompts[g] … prompts[g + 1] − 1`` of
            ``prompt_positions`` (P,), the packed positions of every prompt token, group after group.
    """

    ids: torch.Tensor
    allowed: torch.Tensor
    positions: torch.Tensor
    keep: torch.Tensor
    targets: torch.Tensor
    owner: torch.Tensor
    prompt_positions: torch.Tensor
    prompts: torch.Tensor


def pack_groups(groups: Sequence[tuple[torch.Tensor, Sequence[torch.Tensor]]]) -> PackedRow:
    """Pack ``groups`` of (prompt ids (p,), [answer ids (m_i,), …]) into one row; every answer needs ≥ 1 token."""
    ids, pos, keep, targets, owner, prompt_positions, prompts = [], [], [], [], [], [], [0]
    blocks: list[tuple[int, int, int, int]] = []  # (start, length, start of its prompt, prompt length)
    start, seq = 0, 0
    for prompt, answers in groups:
        p = len(prompt)
        if p == 0:
            raise ValueError("a packed group needs at least one prompt token")
        ids.append(prompt)
        pos.append(torch.arange(p))
        prompt_positions.append(torch.arange(start, start + p))
        prompts.append(prompts[-1] + p)
        blocks.append((start, p, start, 0))  # the prompt: causal within itself
        prompt_start, start = start, start + p
        for answer in answers:
            m = len(answer)
            if m == 0:
                raise ValueError("every answer needs at least one token")
            ids.append(answer)
            pos.append(torch.arange(p, p + m))
            blocks.append((start, m, prompt_start, p))
            # answer token j is predicted at the packed position before it: the prompt's last one for j = 0
            keep.append(torch.tensor([prompt_start + p - 1, *range(start, start + m - 1)]))
            targets.append(answer)
            owner.append(torch.full((m,), seq))
            start, seq = start + m, seq + 1
    allowed = block_causal_mask(blocks)
    return PackedRow(torch.cat(ids), allowed, torch.cat(pos), torch.cat(keep), torch.cat(targets), torch.cat(owner),
                     torch.cat(prompt_positions), torch.tensor(prompts))  # fmt: skip


def block_causal_mask(blocks: Sequence[tuple[int, int, int, int]], context: int = 0) -> torch.Tensor:
    """Which packed position may attend to which: (Q, context + Q) bool.

    Every query sees the first ``context`` keys (a shared prefix held in a KV cache). A block
    ``(start, length, sees_start, sees_length)`` covers packed positions ``start … start + length − 1``; it is causal
    within itself and also sees packed positions ``sees_start … sees_start + sees_length − 1`` (its prompt).
    Blocks must tile ``0 … Q − 1``.
    """
    q = sum(n for _, n, _, _ in blocks)
    allowed = torch.zeros(q, context + q, dtype=torch.bool)
    allowed[:, :context] = True
    for s, n, ps, p in blocks:
        allowed[s : s + n, context + s : context + s + n] = torch.ones(n, n, dtype=torch.bool).tril()
        allowed[s : s + n, context + ps : context + ps + p] = True
    return allowed


PACKING_BACKENDS = ("eager", "sdpa")  # attention implementations that take a custom 4-D mask


def packing_supported(model: nn.Module, longest: int) -> bool:
    """Whether packed rows score exactly as padded ones on ``model`` for sequences (prompt + answer) of up to
    ``longest`` tokens: its attention must take a 4-D mask (eager / SDPA), and a sliding window, which counts
    distance in the packed row rather than in each restarted sequence, must not be exceeded."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    if (getattr(model.config, "_attn_implementation", None) or "sdpa") not in PACKING_BACKENDS:
        return False
    window = getattr(config, "sliding_window", None)
    return not (isinstance(window, int) and window > 0 and longest > window)


def model_attention_mask(allowed: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """``allowed`` (…, Q, K) bool as the model takes a custom 4-D mask: bool, or additive float for eager attention."""
    if getattr(model.config, "_attn_implementation", "sdpa") != "eager":
        return allowed
    dtype = next(model.parameters()).dtype
    return torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)


def pack_rows(sizes: Sequence[int], max_total: int, max_items: int | None = None) -> list[range]:
    """Consecutive ranges of items (``sizes[i]`` each, e.g. answers or tokens) holding at most ``max_total`` in sum
    and ``max_items`` items, unless one item alone is bigger."""
    if max_total < 1 or (max_items is not None and max_items < 1):
        raise ValueError(f"batch limits must be >= 1, got max_total={max_total}, max_items={max_items}")
    out, start, total = [], 0, 0
    for i, n in enumerate(sizes):
        if i > start and (total + n > max_total or (max_items is not None and i - start >= max_items)):
            out.append(range(start, i))
            start, total = i, 0
        total += n
    if len(sizes):
        out.append(range(start, len(sizes)))
    return out


@torch.no_grad()
def packed_logprobs(
    model: nn.Module, row: PackedRow, prompt_logprobs: bool = False
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Sum log-likelihood of every answer in ``row`` (flat over its groups), fp32 on the CPU; with
    ``prompt_logprobs`` also each group's next-token log-probabilities at every prompt position, (p_g, V) fp32 on the
    CPU, from the same forward (the prompt is read anyway; its positions are only added to the kept ones)."""
    device = next(model.parameters()).device
    keep = torch.cat([row.keep, row.prompt_positions]) if prompt_logprobs else row.keep
    out = model(
        input_ids=row.ids[None].to(device),
        attention_mask=model_attention_mask(row.allowed, model)[None, None].to(device),  # (1, 1, Q, Q)
        position_ids=row.positions[None].to(device),
        use_cache=False,
        logits_to_keep=keep.to(device),
    )
    lp = out.logits[0].float().log_softmax(-1)  # (K [+ P], V)
    k = len(row.keep)
    tok = lp[:k].gather(-1, row.targets.to(device)[:, None])[:, 0].cpu()  # (K,)
    n = int(row.owner.max()) + 1
    scores = torch.zeros(n).index_add(0, row.owner, tok)
    if not prompt_logprobs:
        return scores
    prompts = lp[k:].cpu()
    return scores, [prompts[a:b] for a, b in zip(row.prompts[:-1].tolist(), row.prompts[1:].tolist())]

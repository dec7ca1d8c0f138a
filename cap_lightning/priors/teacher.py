"""Score a frozen causal-LM teacher's confidence in label names, with the shared prompt prefix KV-cached.

Design decisions:
- The prompt is ``prefix + " " + text + after + sep + label``: ``prefix`` holds the instruction and the enumerated
  label space (identical for every query of a dataset), ``after`` closes the text and opens the answer
  (``"\\nIntent:"``). With ``chat_template=True`` the same message is rendered by the tokenizer's chat template and
  split at the text, so the prefix and the answer markers come from the template.
- The prefix is run once and its keys/values kept. The variable parts of many queries (text, answer marker, label
  name) are *packed* into one sequence after it, with a block-causal 4-D mask: each block sees the prefix and its
  own earlier tokens, with positions restarting after the prefix. Batch size stays 1, so the prefix cache is never
  copied per query (expanding it to a batch made copies, not matmuls, the main cost). Only the logits of the label
  positions are computed (``logits_to_keep`` with indices). Nothing is generated.
- The uncached reference path runs every full prompt (left-padded batch, explicit positions): the same token ids,
  so both paths score the same sequences (tests pin them within 1e-4).
- ``label_logprobs(text)`` scores all labels for one text with a second cache level: prefix + text run once, then
  the label tokens of all |Y| labels packed after it.
- Labels whose tokens are a prefix of another label's tokens (HWU64: ``email query`` vs ``email querycontact``) are
  scored **with an end marker**, ``PromptParts.end``: the newline that ends the answer line in the plain prompt,
  the tokenizer's end-of-sequence token (the end of the assistant's turn) with a chat template; a marker that
  encodes to no token falls back to the EOS token. The marker is encoded on its own and appended to the label's
  tokens. Without it p(``email query``) would include p(``email querycontact``); with it the scored token sequences
  form a prefix-free set, so they are disjoint events and each is the probability of that label. Labels that are
  no other label's prefix are scored as before (``end_marker=False``: all as before).
- Label names that the tokenizer cannot encode (empty, or mapped to the unknown token) and label sets with two
  names of identical token ids are refused at construction, before any forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

import torch
from torch import Tensor
from tqdm.auto import tqdm

from lmcore.attention_backends import variable_length_attention
from lmcore.packing import block_causal_mask, model_attention_mask, pack_rows
from lmcore.padding import forward_padded, pad_batch

_SENTINEL = "\x00CAPTEXT\x00"


@dataclass(frozen=True)
class PromptParts:
    """The fixed pieces of a teacher prompt around the text and the label."""

    prefix: str
    after: str
    sep: str  # between ``after`` and the label name
    end: str = "\n"  # closes the answer: appended to the labels that are token prefixes of other labels


def label_display_name(name: str) -> str:
    """``card_arrival`` → ``card arrival`` (the form the teacher reads and scores)."""
    return name.replace("_", " ").strip()


def build_prompt_parts(
    label_names: Sequence[str],
    instruction: str,
    text_prefix: str = "Utterance:",
    answer_prefix: str = "Intent:",
    tokenizer=None,
    chat_template: bool = False,
) -> PromptParts:
    """Split the prompt into the shared prefix and the part after the text (see the module docstring)."""
    labels = "\n".join(f"- {label_display_name(n)}" for n in label_names)
    head = f"{instruction}\n{labels}\n\n{text_prefix}"
    if not chat_template:
        return PromptParts(prefix=head, after=f"\n{answer_prefix}", sep=" ", end="\n")
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ValueError("chat_template=True needs a teacher tokenizer that has a chat template")
    message = [{"role": "user", "content": f"{head}{_SENTINEL}\n{answer_prefix}"}]
    rendered = tokenizer.apply_chat_template(message, tokenize=False, add_generation_prompt=True)
    prefix, after = rendered.split(_SENTINEL)
    end = tokenizer.eos_token or "\n"  # the end of the assistant's turn (<|im_end|>, <|eot_id|>)
    return PromptParts(prefix=prefix, after=after, sep="" if after[-1:].isspace() else " ", end=end)


def prefix_labels(label_ids: Sequence[Sequence[int]]) -> list[bool]:
    """Whether each label's token ids are a proper prefix of another label's."""
    ids = [tuple(i) for i in label_ids]
    return [any(len(b) > len(a) and b[: len(a)] == a for b in ids) for a in ids]


def has_prefix_names(label_names: Sequence[str]) -> bool:
    """Whether a label's display name is a string prefix of another's: necessary for a token prefix (a cheap test,
    without the tokenizer, of whether the end marker can change any score)."""
    shown = [label_display_name(n) for n in label_names]
    return any(a != b and b.startswith(a) for a in shown for b in shown)


class TeacherScorer:
    """Log-probabilities of label names under a frozen causal LM, batched, with the prompt prefix KV-cached.

    Args:
        model: a causal LM (eval mode; its weights are not touched).
        tokenizer: its tokenizer.
        parts: the prompt pieces from :func:`build_prompt_parts`.
        label_names: class names in label-index order.
        batch_size: variants per forward pass.
        max_tokens: packed tokens per forward pass (bounds the block mask, ``max_tokens × (prefix + max_tokens)``).
        use_prefix_cache: run the shared prefix once (True) or with every query (False, the naive reference).
        end_marker: score the labels that are token prefixes of other labels followed by ``parts.end`` (see the
            module docstring).
    """

    def __init__(
        self,
        model,
        tokenizer,
        parts: PromptParts,
        label_names: Sequence[str],
        batch_size: int = 64,
        max_tokens: int = 2048,
        use_prefix_cache: bool = True,
        end_marker: bool = True,
    ) -> None:
        if batch_size < 1 or max_tokens < 1:
            raise ValueError(f"batch_size and max_tokens must be >= 1, got {batch_size}, {max_tokens}")
        self.model, self.tokenizer, self.parts = model, tokenizer, parts
        self.batch_size, self.max_tokens, self.use_prefix_cache = batch_size, max_tokens, use_prefix_cache
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id or 0
        self.prefix_ids: list[int] = tokenizer(parts.prefix).input_ids
        self.label_ids = self._encode_labels(label_names)
        if end_marker:
            end = self._end_ids()
            self.label_ids = [ids + end if is_prefix else ids
                              for ids, is_prefix in zip(self.label_ids, prefix_labels(self.label_ids))]  # fmt: skip
        self.calls = 0  # sequences scored (the cost unit of the report)
        self._prefix_kv: list[tuple[Tensor, Tensor]] | None = None

    def _encode_labels(self, label_names: Sequence[str]) -> list[list[int]]:
        tok, unk = self.tokenizer, self.tokenizer.unk_token_id
        ids, seen = [], {}
        for i, name in enumerate(label_names):
            shown = label_display_name(name)
            enc = tok(self.parts.sep + shown, add_special_tokens=False).input_ids if shown else []
            if not enc or (unk is not None and unk in enc):
                raise ValueError(
                    f"label {i} {name!r} cannot be encoded by the teacher tokenizer "
                    f"({'empty name' if not enc else 'maps to the unknown token'}); rename the label or use a teacher "
                    "whose vocabulary covers it"
                )
            if tuple(enc) in seen:
                raise ValueError(f"labels {seen[tuple(enc)]!r} and {name!r} encode to the same teacher tokens")
            seen[tuple(enc)] = name
            ids.append(enc)
        return ids

    def _end_ids(self) -> list[int]:
        """Token ids of the end marker (``parts.end``, else the EOS token when it encodes to nothing)."""
        ids = self.tokenizer(self.parts.end, add_special_tokens=False).input_ids
        if not ids and self.tokenizer.eos_token_id is not None:
            ids = [self.tokenizer.eos_token_id]
        if not ids:
            raise ValueError(
                f"the end marker {self.parts.end!r} encodes to no token and the teacher tokenizer has no EOS token: "
                "labels that are prefixes of other labels cannot be told apart; rename them or set end_marker=False"
            )
        return ids

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def text_ids(self, text: str) -> list[int]:
        return self.tokenizer(" " + text + self.parts.after, add_special_tokens=False).input_ids

    # ------------------------------------------------------------------------------------------- forward
    def _prefix_cache(self):
        """A fresh cache holding the shared prefix (computed once; later calls only wrap the stored tensors)."""
        from transformers import DynamicCache

        if self._prefix_kv is None:
            out = self.model(input_ids=torch.tensor([self.prefix_ids], device=self.device), use_cache=True)
            self._prefix_kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        return DynamicCache(ddp_cache_data=self._prefix_kv)

    def _packed_forward(self, blocks: list[list[int]], keep: list[int], cache, context: int) -> Tensor:
        """Run ``blocks`` packed into one sequence after ``context`` cached tokens: each block sees the context
        and its own earlier tokens only (block-causal 4-D mask, positions restarting at ``context``). Returns the
        logits ``(len(keep), V)`` at the packed positions ``keep``."""
        ids = torch.tensor([t for b in blocks for t in b], device=self.device)[None]  # (1, Q)
        starts = list(accumulate((len(b) for b in blocks[:-1]), initial=0))
        allowed = block_causal_mask([(s, len(b), s, 0) for s, b in zip(starts, blocks)], context)  # (Q, C + Q)
        pos = torch.cat([torch.arange(context, context + len(b)) for b in blocks])
        out = self.model(
            input_ids=ids,
            attention_mask=model_attention_mask(allowed, self.model)[None, None].to(self.device),  # (1, 1, Q, C + Q)
            position_ids=pos[None].to(self.device),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=torch.tensor(keep, device=self.device),
        )
        self.calls += len(blocks)
        return out.logits[0]

    def _padded_forward(self, rows: list[list[int]], keep: int) -> Tensor:
        """The naive reference: full prompts, left-padded, one row each; logits of the last ``keep`` positions."""
        batch = pad_batch([torch.tensor(r) for r in rows], side="left", pad_value=self.pad_id)
        logits = forward_padded(self.model, batch, logits_to_keep=keep)
        self.calls += len(rows)
        return logits

    @variable_length_attention()
    @torch.inference_mode()
    def score(self, texts: Sequence[str], labels: Sequence[int], progress: bool = True) -> Tensor:
        """``log p(label_i | prompt(text_i))`` for each pair, float64 ``(N,)``; ``progress`` shows a bar (rows
        scored, with rate and ETA) while it runs."""
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        rows = [self.text_ids(t) + self.label_ids[y] for t, y in zip(texts, labels)]
        n_label = [len(self.label_ids[y]) for y in labels]
        out = torch.empty(len(rows), dtype=torch.float64)
        bar = tqdm(total=len(rows), desc="teacher: masked variants", unit="variant", leave=False, disable=not progress)
        for chunk in pack_rows([len(r) for r in rows], self.max_tokens, self.batch_size):
            if self.use_prefix_cache:
                blocks = [rows[i][:-1] for i in chunk]  # the last token predicts nothing we need
                keep, start = [], 0
                for i, b in zip(chunk, blocks):
                    keep.extend(range(start + len(b) - n_label[i], start + len(b)))
                    start += len(b)
                logits = self._packed_forward(blocks, keep, self._prefix_cache(), len(self.prefix_ids))
                logp = torch.log_softmax(logits.double(), -1)  # (sum of label lengths, V)
                start = 0
                for i in chunk:
                    targets = torch.tensor(rows[i][-n_label[i] :], device=logp.device)
                    out[i] = logp[start : start + n_label[i]].gather(-1, targets[:, None]).sum().cpu()
                    start += n_label[i]
            else:
                width = max(n_label[i] for i in chunk) + 1
                logp = torch.log_softmax(
                    self._padded_forward([self.prefix_ids + rows[i] for i in chunk], width).double(), -1
                )
                for j, i in enumerate(chunk):
                    n = n_label[i]  # label tokens are the last n, predicted one position earlier
                    targets = torch.tensor(rows[i][-n:], device=logp.device)
                    out[i] = logp[j, width - 1 - n : width - 1].gather(-1, targets[:, None]).sum().cpu()
            bar.update(len(chunk))
        bar.close()
        return out

    @torch.inference_mode()
    def label_logprobs(self, text: str) -> Tensor:
        """``log p(label | prompt(text))`` for every label, float64 ``(|Y|,)``; the text runs once."""
        if not self.use_prefix_cache:
            return self.score([text] * len(self.label_ids), range(len(self.label_ids)))
        body = self.text_ids(text)
        cache = self._prefix_cache()
        out = self.model(
            input_ids=torch.tensor([body], device=self.device),
            position_ids=torch.arange(len(self.prefix_ids), len(self.prefix_ids) + len(body), device=self.device)[None],
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        self.calls += 1
        first = torch.log_softmax(out.logits[0, -1].double(), -1)  # (V,): predicts every label's first token
        scores = torch.tensor([float(first[ids[0]]) for ids in self.label_ids], dtype=torch.float64)
        longer = [i for i, ids in enumerate(self.label_ids) if len(ids) > 1]
        if longer:
            blocks = [self.label_ids[i][:-1] for i in longer]  # token j predicts token j + 1
            logits = self._packed_forward(blocks, list(range(sum(map(len, blocks)))), cache, cache.get_seq_length())
            logp = torch.log_softmax(logits.double(), -1)
            start = 0
            for i, b in zip(longer, blocks):
                targets = torch.tensor(self.label_ids[i][1:], device=logp.device)
                scores[i] += float(logp[start : start + len(b)].gather(-1, targets[:, None]).sum())
                start += len(b)
        return scores

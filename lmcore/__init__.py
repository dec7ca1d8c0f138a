"""lmcore: the neutral base that ``cap_lightning`` and ``steering`` both stand on, and that imports neither.

- ``lmcore.models``: model names → folders (bundled pip weights, local folders, hub ids); tokenizer / classifier /
  causal-LM loaders.
- ``lmcore.padding``: pad variable-length rows, positions from the padding mask, one padded forward.
- ``lmcore.packing``: several sequences in one row (block-causal 4-D mask, restarted positions, logits only where
  needed).
- ``lmcore.quadrature``: the one integrated-gradients quadrature (points and weights on [0, 1]).
- ``lmcore.io``: atomic file writes and content hashes.
- ``lmcore.choices``: string options checked against their ``typing.Literal`` alias.
- ``lmcore.cli``: the ``lightning`` / ``cap-lightning`` launcher (each LightningModule names its own runs).

See ``docs/architecture.md`` for the import rule (enforced by ``tests/test_imports.py``).
"""

__version__ = "0.1.0"

"""The steering methods, one record each: how deltas are read, whether k and attributions matter, forced settings.

Design decisions:
- One registry (``METHODS``) is read by the library ``fit_*`` functions, ``SteeringModule`` and the sweep, so a
  method means the same thing on every path (same deltas, same aggregate / mode, same unit normalisation).
- ``deltas="masked"``: δ = h(x) − h(x with some tokens masked) (``extract_deltas``), tokens chosen by ``selection``:
  ``attribution`` (GrAInS, top-k by contrastive IG), ``random`` (seeded random k) or ``all`` (every candidate; P = Q,
  so u⁺ − u⁻ would be 0 and the mode is forced to ``pos``). ``deltas="paired"``: δ = h(x ⊕ y⁺) − h(x ⊕ y⁻) at the
  last token (CAA: their ``mean``; RepE-style PCA: their oriented PC1), one delta per example, no k.
  ``deltas="random"``: a seeded Gaussian δ per example (keyed on the example's index), no model pass; their mean,
  unit-normalised, is a **random direction** with the same norm as every other unit vector: the control with the
  same side-effect budget and no signal (docs/grains.md §6.8).
- A method that forces ``aggregate`` or ``mode`` overrides what the caller passes; ``aggregates`` lists what a method
  accepts (PCA is a principal component, so not ``mean``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from lmcore.choices import check_choice
from steering.vectors import AGGREGATES, Aggregate, Mode

if TYPE_CHECKING:
    from steering.extract import GrainsConfig, Selection

MethodName = Literal[
    "grains", "random_k", "all_tokens", "caa", "pca", "random_direction"
]  # the keys of METHODS (tested)


@dataclass(frozen=True)
class SteeringMethod:
    """One steering method.

    Attributes:
        name: registry key (``SteeringModule(method=...)``, vector metadata ``method``).
        deltas: ``masked`` (masked-input deltas, ``extract_deltas``) | ``paired`` (paired differences x ⊕ y±) |
            ``random`` (seeded Gaussian deltas: a random direction).
        selection: which tokens are masked (``masked`` only): ``attribution`` | ``random`` | ``all``.
        uses_k: the vector depends on k (so a k sweep means something).
        aggregate / mode: forced settings, or None to take the caller's.
        aggregates: the aggregates the method accepts.
    """

    name: str
    deltas: Literal["masked", "paired", "random"]
    selection: Selection | None = None
    uses_k: bool = False
    aggregate: Aggregate | None = None
    mode: Mode | None = None
    aggregates: tuple[str, ...] = AGGREGATES

    @property
    def uses_attributions(self) -> bool:
        return self.selection == "attribution"

    def configure(self, config: GrainsConfig) -> GrainsConfig:
        """``config`` with this method's token selection (unchanged for paired methods, which mask nothing)."""
        return config if self.selection is None else replace(config, selection=self.selection)

    def settings(self, aggregate: Aggregate, mode: Mode) -> tuple[Aggregate, Mode]:
        """The (aggregate, mode) this method builds its vector with, given the caller's."""
        try:
            check_choice("aggregate", aggregate, Literal[self.aggregates])
        except ValueError as err:
            raise ValueError(f"{err} for method {self.name!r}") from None
        return self.aggregate or aggregate, self.mode or mode


METHODS: dict[str, SteeringMethod] = {
    m.name: m
    for m in (
        SteeringMethod("grains", "masked", selection="attribution", uses_k=True),
        SteeringMethod("random_k", "masked", selection="random", uses_k=True),
        SteeringMethod("all_tokens", "masked", selection="all", mode="pos"),
        SteeringMethod("caa", "paired", aggregate="mean", mode="pos"),
        SteeringMethod("pca", "paired", mode="pos", aggregates=("pca", "pca_uncentred")),
        SteeringMethod("random_direction", "random", aggregate="mean", mode="pos"),
    )
}


def get_method(name: str) -> SteeringMethod:
    """The registry entry of ``name``; ``ValueError`` naming the choices otherwise."""
    check_choice("method", name, MethodName)
    return METHODS[name]


def method_for_selection(selection: Selection) -> SteeringMethod:
    """The masked method with this token selection (``GrainsConfig.selection`` → ``grains`` / ``random_k`` / …)."""
    return next(m for m in METHODS.values() if m.selection == selection)

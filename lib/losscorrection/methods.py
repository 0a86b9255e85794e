"""The ten training methods of the paper's Table 2, as one registry.

Each :class:`Method` says which loss a method minimises and how it uses the
noise: the two corrections of Section 3 (backward, Eq. 8, and forward, Eq. 11)
with the true T or with the estimate T̂ of Algorithm 1 (Eq. 12-13), and the
baselines of Section 6 (cross-entropy, the unhinged and sigmoid losses on a
batch-normalised output layer, Savage, soft and hard bootstrapping). Training,
the results tables and the command line read the method names and their
properties here, never from the spelling of a name.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BN_HEAD_METHODS", "METHODS", "METHOD_SPECS", "STAGE_ONE", "Method", "method_spec"]


@dataclass(frozen=True, kw_only=True)
class Method:
    """One method of Table 2.

    ``loss``: the :mod:`losscorrection.losses` function of a baseline (None for
    a correction); ``correction``: ``"forward"`` or ``"backward"`` (None for a
    baseline); ``estimated_T``: the correction uses T̂ estimated from the
    stage-1 cross-entropy model (Algorithm 1) rather than the true T;
    ``bn_head``: the network ends in a batch-normalised output layer.
    """

    name: str
    label: str  # as the paper writes it
    loss: str | None = None
    correction: str | None = None
    estimated_T: bool = False
    bn_head: bool = False

    @property
    def uses_true_T(self) -> bool:
        """Corrected with the true T (starred in the paper's Table 2)."""
        return self.correction is not None and not self.estimated_T


METHOD_SPECS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(name="cross_entropy", label="cross-entropy", loss="cross_entropy"),
        Method(name="unhinged_bn", label="unhinged (BN)", loss="unhinged", bn_head=True),
        Method(name="sigmoid_bn", label="sigmoid (BN)", loss="sigmoid", bn_head=True),
        Method(name="savage", label="Savage", loss="savage"),
        Method(name="bootstrap_soft", label="bootstrap soft", loss="bootstrap_soft"),
        Method(name="bootstrap_hard", label="bootstrap hard", loss="bootstrap_hard"),
        Method(name="backward_T", label="backward ←T", correction="backward"),
        Method(name="backward_That", label="backward ←T̂", correction="backward", estimated_T=True),
        Method(name="forward_T", label="forward →T", correction="forward"),
        Method(name="forward_That", label="forward →T̂", correction="forward", estimated_T=True),
    )
}
METHODS: tuple[str, ...] = tuple(METHOD_SPECS)
STAGE_ONE = "cross_entropy"  # Algorithm 1's first stage: the model T̂ is estimated from
BN_HEAD_METHODS: tuple[str, ...] = tuple(m.name for m in METHOD_SPECS.values() if m.bn_head)


def method_spec(name: str) -> Method:
    """The :class:`Method` called ``name``; ValueError naming the known ones otherwise."""
    try:
        return METHOD_SPECS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}") from None

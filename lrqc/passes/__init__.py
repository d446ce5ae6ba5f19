"""Passes over the IR: infer_shapes, split_stages, estimate_cost; run_passes chains them with
verify() after each."""

from __future__ import annotations

from ..ir import nodes as ir
from ..ir.verify import verify
from .cost import CostTable, estimate_cost
from .shapes import bind, infer_shapes
from .stages import split_stages


def run_passes(p: ir.Program) -> ir.Program:
    """verify, infer_shapes, verify, split_stages, verify."""
    verify(p)
    p = infer_shapes(p)
    verify(p)
    p = split_stages(p)
    verify(p)
    return p


__all__ = ["CostTable", "bind", "estimate_cost", "infer_shapes", "run_passes", "split_stages"]

"""The fast path's Inductor pass: small matrix products written as sums, for Inductor to fuse.

At batch 10 the arithmetic of a step is a fraction of its time; the rest was calls into BLAS for
matrix products of a few thousand multiply-adds, each with its checks and a fresh output tensor.
On the CPU, products of up to ``INLINE_PRODUCT_LIMIT`` multiply-adds are instead written as
Σ_k a_mk b_kn, which Inductor turns into loops of its own and fuses with their neighbours (the
sigmoid, BP1-BP4's elementwise factors, the update). Larger products (from batch 100 on) stay
with BLAS, which is faster there.
"""

from typing import Any

import torch
from torch import Tensor
from torch._inductor.custom_graph_pass import CustomGraphPass, get_hash_for_files

INLINE_PRODUCT_LIMIT = 2**18  # multiply-adds: smaller matrix products become Inductor's own loops

aten = torch.ops.aten
PRODUCTS = (aten.mm.default, aten.addmm.default)  # a @ b, and β bias + α a @ b


def _inlined(a: Tensor, b: Tensor) -> bool:
    return a.device.type == "cpu" and a.shape[0] * a.shape[1] * b.shape[1] <= INLINE_PRODUCT_LIMIT


def _call(graph: torch.fx.Graph, operator: Any, *arguments: Any) -> torch.fx.Node:
    """A new node ``operator(*arguments)`` of ``graph``, with the fake value Inductor reads."""
    node = graph.call_function(operator, arguments)
    node.meta["val"] = operator(
        *(
            argument.meta["val"] if isinstance(argument, torch.fx.Node) else argument
            for argument in arguments
        )
    )
    return node


def _sum_of_products(graph: torch.fx.Graph, a: torch.fx.Node, b: torch.fx.Node) -> torch.fx.Node:
    """a @ b for (M, K) and (K, N) as Σ_k a_mk b_kn: a reduction that Inductor writes itself."""
    terms = _call(
        graph,
        aten.mul.Tensor,
        _call(graph, aten.unsqueeze.default, a, -1),  # (M, K, 1)
        _call(graph, aten.unsqueeze.default, b, 0),  # (1, K, N)
    )
    return _call(graph, aten.sum.dim_IntList, terms, [-2])


class InlineSmallProducts(CustomGraphPass):
    """The Inductor pass that writes each small matrix product of a graph (``aten.mm`` and
    ``aten.addmm`` of at most INLINE_PRODUCT_LIMIT multiply-adds, on the CPU) as its sum. It runs
    on the graph that autograd's tracing leaves, the while loop's body included, before Inductor's
    own passes. Its ``uuid`` (a hash of this file) lets Inductor's FX graph cache keep the code
    it compiles: a later process compiles the same steps from the cache, without a C++ compile."""

    def __call__(self, graph: torch.fx.Graph) -> None:
        for node in list(graph.nodes):
            if node.op != "call_function" or node.target not in PRODUCTS:
                continue
            *bias, a, b = node.args
            if not _inlined(a.meta["val"], b.meta["val"]):
                continue
            with graph.inserting_before(node):
                inlined = _sum_of_products(graph, a, b)
                if bias:  # addmm: β bias + α a @ b
                    alpha, beta = node.kwargs.get("alpha", 1), node.kwargs.get("beta", 1)
                    if alpha != 1:
                        inlined = _call(graph, aten.mul.Tensor, inlined, alpha)
                    inlined = _call(
                        graph,
                        aten.add.Tensor,
                        _call(graph, aten.mul.Tensor, bias[0], beta) if beta != 1 else bias[0],
                        inlined,
                    )
            node.replace_all_uses_with(inlined)
            graph.erase_node(node)

    def uuid(self) -> bytes:
        return get_hash_for_files((__file__,))

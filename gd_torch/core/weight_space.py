"""Weight space: every weight and bias of a network as one point θ.

The cost is a function C(θ) of P numbers (13,002 for 784-16-16-10): the cost surface is its
graph over this space, and gradient descent moves the point θ downhill, one step at a time. A
point is the flat vector of the parameters in ``Network.parameters()`` order, W^1 (row by row),
b^1, W^2, b^2, ..., as ``torch.nn.utils.parameters_to_vector`` lays them out.
"""

import math

import torch
from torch import Tensor

from gd_torch.core.model import Network


def parameter_shapes(sizes: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The shapes of W^1, b^1, W^2, b^2, ...: [(n_1, n_0), (n_1,), (n_2, n_1), (n_2,), ...]."""
    shapes = []
    for n_in, n_out in zip(sizes, sizes[1:]):
        shapes += [(n_out, n_in), (n_out,)]
    return shapes


def parameter_count(sizes: tuple[int, ...]) -> int:
    """P, the weights and biases of a network of these layer sizes: 13,002 for 784-16-16-10."""
    return sum(math.prod(shape) for shape in parameter_shapes(sizes))


def point_of(network: Network) -> Tensor:
    """θ (P,): a copy of the network's weights and biases as one vector."""
    return torch.nn.utils.parameters_to_vector(network.parameters()).detach().clone()


def parameters_at(points: Tensor, sizes: tuple[int, ...]) -> list[Tensor]:
    """W^1, b^1, W^2, ... of the points (..., P): views (..., n_l, n_{l-1}) and (..., n_l)."""
    shapes = parameter_shapes(sizes)
    pieces = points.split([math.prod(shape) for shape in shapes], dim=-1)
    return [piece.unflatten(-1, shape) for piece, shape in zip(pieces, shapes)]


def network_at(point: Tensor, sizes: tuple[int, ...]) -> Network:
    """A ``Network`` whose weights and biases are the point θ (P,)."""
    network = Network(sizes, dtype=point.dtype).to(point.device)
    torch.nn.utils.vector_to_parameters(point.detach(), network.parameters())
    return network

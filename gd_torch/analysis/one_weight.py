"""One weight, one slope: the cost as a function of a single weight w, all else held fixed.

Gradient descent on that weight alone visits w_{k+1} = w_k − η C'(w_k): the step is
proportional to the slope, so the steps shrink as the curve flattens near a minimum.
"""

from collections.abc import Callable

import torch

from gd_torch.analysis.sensitivity import full_gradient
from gd_torch.core.cost import cost
from gd_torch.core.data import Split
from gd_torch.core.model import Network


def descend(
    slope: Callable[[float], float], start: float, learning_rate: float, steps: int
) -> list[float]:
    """[w_0 = start, w_1, ..., w_steps] with w_{k+1} = w_k − η C'(w_k)."""
    path = [start]
    for _ in range(steps):
        path.append(path[-1] - learning_rate * slope(path[-1]))
    return path


class OneWeight:
    """C(w) and C'(w) for the weight ``network.layers[layer - 1].weight[row, column]`` over
    ``split``."""

    def __init__(
        self,
        network: Network,
        split: Split,
        convention: str,
        layer: int,
        row: int,
        column: int,
        engine: str = "manual",
    ):
        self.network, self.split, self.convention, self.engine = network, split, convention, engine
        self.layer, self.index = layer, (row, column)
        self.trained_value = self._weight()[self.index].item()

    def _weight(self) -> torch.Tensor:
        return self.network.layers[self.layer - 1].weight

    def _set(self, value: float) -> None:
        with torch.no_grad():
            self._weight()[self.index] = value

    def cost(self, value: float) -> float:
        """C with this weight set to ``value``."""
        self._set(value)
        with torch.inference_mode():
            result = cost(
                self.network(self.split.images, weighted_output=True),
                self.split.targets,
                self.convention,
            ).item()
        self._set(self.trained_value)
        return result

    def slope(self, value: float) -> float:
        """∂C/∂w with this weight set to ``value``."""
        self._set(value)
        result = full_gradient(self.network, self.split, self.convention, self.engine)[
            self.layer - 1
        ][0][self.index].item()
        self._set(self.trained_value)
        return result

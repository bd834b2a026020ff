"""The algorithms FlowBlock runs data-side, found through the ``flowblock.algorithms``
entry points; see :mod:`flowblock.executor.algorithms.base`."""

from flowblock.executor.algorithms.base import (
    Algorithm,
    AlgorithmError,
    load_algorithms,
    publish_algorithms,
)

__all__ = ["Algorithm", "AlgorithmError", "load_algorithms", "publish_algorithms"]

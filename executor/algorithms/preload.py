"""What the sandbox's forkserver loads once, before it forks any algorithm's child.

Every child is a fresh fork of the forkserver: whatever a library does on first use
would otherwise be paid by every run. So the forkserver imports the data stack and the
algorithms and runs OpenDP's mechanisms once (TensorFlow is not loaded: most children
never need its seconds). Last, as root, it opens the folders Python imports from that a
run's own user could not reach (see :func:`flowblock.executor.sandbox.link_python_paths`).
"""

import numpy  # noqa: F401
import pandas  # noqa: F401

import flowblock.executor.algorithms  # noqa: F401
from flowblock.executor.algorithms.private import warm_up
from flowblock.executor.sandbox import link_python_paths

warm_up()
link_python_paths()

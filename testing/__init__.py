"""Fakes and fixtures for testing FlowBlock and anything built on it.

Like JupyterHub's ``MockHub`` and httpx's ``MockTransport``, these ship with the library
so that our tests and anyone extending FlowBlock use the same seams. Load the pytest
fixtures with ``pytest_plugins = ["flowblock.testing.fixtures"]`` in a ``conftest.py``.
It may import every part, as tests do; no part imports it.
"""

from flowblock.testing.identities import DemoWorld, make_demo_world

__all__ = ["DemoWorld", "make_demo_world"]

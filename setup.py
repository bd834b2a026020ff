"""Package layout: each top-level directory is one part of the system.

``hub/`` installs as ``flowblock.hub``, ``executor/`` as ``flowblock.executor`` and so
on, so the source tree shows the architecture while imports stay namespaced. Everything
else about the distribution is declared in pyproject.toml.
"""

from setuptools import find_packages, setup

PARTS = ("hub", "extension", "chaincode", "network", "spawner", "executor", "stack", "testing")


def _packages(directory: str, name: str) -> list[str]:
    return [name, *(f"{name}.{sub}" for sub in find_packages(directory))]


packages = _packages("flowblock", "flowblock")
package_dir = {"flowblock": "flowblock"}
for part in PARTS:
    packages += _packages(part, f"flowblock.{part}")
    package_dir[f"flowblock.{part}"] = part

setup(packages=packages, package_dir=package_dir)

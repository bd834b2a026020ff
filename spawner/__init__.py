"""Spawners that start researchers' notebook servers with no route and no credentials to
raw data: Docker Swarm in production, local processes on one machine.

It may import the core and the hub; never the data side (``flowblock.executor``), the
chaincode, the stack or the fakes, so nothing of the data side can reach a notebook.
"""

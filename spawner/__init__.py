"""Spawners that start researchers' notebook servers with no route and no credentials to
raw data: Docker Swarm in production, local processes on one machine.
"""

"""The one-machine system: FlowBlock's parts started, supervised and stopped together.

Holds :class:`~flowblock.stack.system.Stack` (the chaincode service, the devnet, the S3
server and each organisation's executor, later the hub), the demo world
(:mod:`flowblock.stack.demo`) and the ``flowblock up | demo | status | down`` commands
(:mod:`flowblock.stack.cli`). It composes the parts, so it may import every part; no
part imports it. What it writes for others, ``stack.json``, is read through the core's
:mod:`flowblock.stackfile`.
"""

from flowblock.stackfile import read_stack_file, remove_stack_file, write_stack_file

__all__ = ["read_stack_file", "remove_stack_file", "write_stack_file"]

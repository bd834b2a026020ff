"""A small contract that keeps notes in organisations' implicit private data collections.

It exists to test private data end to end (in-process with ``LocalLedger`` and on a
devnet) without the FlowBlock contracts: values arrive in the transient map, as real
contracts should take them, so they never appear in a block. Serve it with
``flowblock chaincode serve --contract flowblock.testing.private_notes:PrivateNotes``.
"""

from __future__ import annotations

from flowblock.chaincode import ChaincodeError, Context, Contract, transaction

#: The transient map entry that carries a note's value.
VALUE = "value"


class PrivateNotes(Contract):
    name = "PrivateNotes"

    @transaction
    def Put(self, ctx: Context, collection: str, key: str) -> str:  # noqa: N802
        """Write the transient ``value`` under ``key`` in ``collection``."""
        ctx.stub.put_private_data(collection, key, _value(ctx))
        return key

    @transaction
    def PutWithPublic(self, ctx: Context, collection: str, key: str) -> str:  # noqa: N802
        """As ``Put``, and record publicly that the key was written (a public write)."""
        ctx.stub.put_private_data(collection, key, _value(ctx))
        ctx.stub.put_state(f"written~{key}", b"1")
        return key

    @transaction
    def Delete(self, ctx: Context, collection: str, key: str) -> str:  # noqa: N802
        ctx.stub.del_private_data(collection, key)
        return key

    @transaction
    def Append(self, ctx: Context, collection: str, key: str) -> str:  # noqa: N802
        """Add the transient ``value`` to the note: a private read, then a private write."""
        old = ctx.stub.get_private_data(collection, key) or b""
        ctx.stub.put_private_data(collection, key, old + _value(ctx))
        return key

    @transaction
    def Publish(self, ctx: Context, collection: str, key: str) -> str:  # noqa: N802
        """Copy the note to public state: only members can read it, yet a public write
        needs the channel's policy, which members alone may not satisfy."""
        value = ctx.stub.get_private_data(collection, key)
        ctx.stub.put_state(f"published~{key}", value or b"")
        return key

    @transaction(submit=False)
    def Get(self, ctx: Context, collection: str, key: str) -> bytes:  # noqa: N802
        value = ctx.stub.get_private_data(collection, key)
        if value is None:
            raise ChaincodeError(f"no note {key!r} in {collection}", 404)
        return value

    @transaction(submit=False)
    def Hash(self, ctx: Context, collection: str, key: str) -> str:  # noqa: N802
        """The hex SHA-256 of the note, or "" if there is none: any organisation may ask."""
        found = ctx.stub.get_private_data_hash(collection, key)
        return found.hex() if found else ""

    @transaction(submit=False)
    def List(self, ctx: Context, collection: str) -> list[str]:  # noqa: N802
        return [kv.key for kv in ctx.stub.get_private_data_by_range(collection, "", "")]

    @transaction
    def ListThenPut(self, ctx: Context, collection: str, key: str) -> str:  # noqa: N802
        """A private range query and a write in one transaction, which Fabric refuses."""
        list(ctx.stub.get_private_data_by_range(collection, "", ""))
        ctx.stub.put_private_data(collection, key, _value(ctx))
        return key


def _value(ctx: Context) -> bytes:
    value = ctx.stub.transient.get(VALUE)
    if not value:
        raise ChaincodeError(f"the note's value must be given in the transient map as {VALUE!r}")
    return value

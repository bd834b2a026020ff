"""A small asset-transfer chaincode, Fabric's classic sample, that proves the stack.

It exercises what real contracts use: reads and writes, composite keys, range and
paginated queries, history, the creator's identity, the transaction timestamp and
events. Serve it with ``flowblock chaincode serve --contract
flowblock.testing.asset_transfer:AssetTransfer --chaincode-id asset``.
"""

from __future__ import annotations

import json

from flowblock.canonical import canonical_json
from flowblock.chaincode import (
    ChaincodeError,
    Context,
    Contract,
    create_composite_key,
    split_composite_key,
    transaction,
)

OWNER_INDEX = "owner~asset"


class AssetTransfer(Contract):
    name = "AssetTransfer"

    @transaction
    def Create(self, ctx: Context, asset_id: str, owner: str, value: int) -> dict:  # noqa: N802
        stub = ctx.stub
        if stub.get_state(asset_id) is not None:
            raise ChaincodeError(f"the asset {asset_id} already exists")
        asset = {
            "id": asset_id,
            "owner": owner,
            "value": value,
            "created_by": ctx.client_identity.name,
            "created_at": stub.timestamp.isoformat(),
        }
        stub.put_state(asset_id, canonical_json(asset))
        stub.put_state(owner_key(owner, asset_id), b"\x00")
        stub.set_event("AssetCreated", canonical_json({"id": asset_id, "owner": owner}))
        return asset

    @transaction(submit=False)
    def Read(self, ctx: Context, asset_id: str) -> dict:  # noqa: N802
        return self._asset(ctx, asset_id)

    @transaction
    def Transfer(self, ctx: Context, asset_id: str, new_owner: str) -> dict:  # noqa: N802
        asset = self._asset(ctx, asset_id)
        ctx.stub.del_state(owner_key(asset["owner"], asset_id))
        asset["owner"] = new_owner
        ctx.stub.put_state(asset_id, canonical_json(asset))
        ctx.stub.put_state(owner_key(new_owner, asset_id), b"\x00")
        ctx.stub.set_event("AssetTransferred", canonical_json({"id": asset_id, "owner": new_owner}))
        return asset

    @transaction
    def Delete(self, ctx: Context, asset_id: str) -> None:  # noqa: N802
        asset = self._asset(ctx, asset_id)
        ctx.stub.del_state(asset_id)
        ctx.stub.del_state(owner_key(asset["owner"], asset_id))

    @transaction(submit=False)
    def All(self, ctx: Context) -> list:  # noqa: N802
        return [json.loads(kv.value) for kv in ctx.stub.get_state_by_range("", "")]

    @transaction(submit=False)
    def Page(self, ctx: Context, page_size: int, bookmark: str) -> dict:  # noqa: N802
        records, following = ctx.stub.get_state_by_range_with_pagination(
            "", "", page_size, bookmark
        )
        return {"assets": [json.loads(kv.value) for kv in records], "bookmark": following}

    @transaction(submit=False)
    def OwnedBy(self, ctx: Context, owner: str) -> list:  # noqa: N802
        return [
            split_composite_key(kv.key)[1][1]
            for kv in ctx.stub.get_state_by_partial_composite_key(OWNER_INDEX, [owner])
        ]

    @transaction(submit=False)
    def History(self, ctx: Context, asset_id: str) -> list:  # noqa: N802
        return [
            {"tx_id": m.tx_id, "deleted": m.is_delete, "value": m.value.decode() or None}
            for m in ctx.stub.get_history_for_key(asset_id)
        ]

    @transaction(submit=False)
    def WhoAmI(self, ctx: Context) -> dict:  # noqa: N802
        identity = ctx.client_identity
        return {"msp_id": identity.msp_id, "name": identity.name, "role": identity.role}

    @staticmethod
    def _asset(ctx: Context, asset_id: str) -> dict:
        data = ctx.stub.get_state(asset_id)
        if data is None:
            raise ChaincodeError(f"the asset {asset_id} does not exist", 404)
        return json.loads(data)


def owner_key(owner: str, asset_id: str) -> str:
    return create_composite_key(OWNER_INDEX, [owner, asset_id])

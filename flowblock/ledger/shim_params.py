"""``ChaincodeAdditionalParams``: what a peer offers a chaincode in its READY message.

Fabric 3.1 peers tell a chaincode whether they accept batched writes
(WRITE_BATCH_STATE) and multi-key reads (GET_STATE_MULTIPLE), and how large a batch
may be. The generated Python protos we depend on predate the message, so it is
declared here, in a private descriptor pool, with Fabric's field numbers. A peer that
sends an empty READY (Fabric 2.5) offers neither, and chaincode falls back to one
message per key.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_FIELD = descriptor_pb2.FieldDescriptorProto


def _declare() -> type:
    file = descriptor_pb2.FileDescriptorProto(
        name="flowblock/chaincode_additional_params.proto", package="protos", syntax="proto3"
    )
    message = file.message_type.add(name="ChaincodeAdditionalParams")
    for number, (name, kind) in enumerate(
        [
            ("use_write_batch", _FIELD.TYPE_BOOL),
            ("max_size_write_batch", _FIELD.TYPE_UINT32),
            ("use_get_multiple_keys", _FIELD.TYPE_BOOL),
            ("max_size_get_multiple_keys", _FIELD.TYPE_UINT32),
        ],
        start=1,
    ):
        message.field.add(name=name, number=number, type=kind, label=_FIELD.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("protos.ChaincodeAdditionalParams")
    )


ChaincodeAdditionalParams = _declare()

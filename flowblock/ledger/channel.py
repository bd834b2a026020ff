"""A channel's configuration: the genesis block that names its organisations.

Block 0 carries the channel configuration the way Fabric does (a CONFIG envelope with
the organisations' MSP definitions under ``Application`` and ``Orderer``, and the
endorsement policy), so the chain itself says whom it trusts and ``flowblock verify``
needs nothing but the block file.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from fabric_protos.common import common_pb2, configtx_pb2, policies_pb2
from fabric_protos.msp import msp_config_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from flowblock.identity import Identity
from flowblock.ledger import blocks, protocol

APPLICATION, ORDERER = "Application", "Orderer"
ENDORSEMENT_POLICY = "Endorsement"


def msp_config(msp_id: str, root_certificates: list[bytes]) -> msp_config_pb2.FabricMSPConfig:
    """An organisation's MSP definition with NodeOUs, as configtxgen writes it."""
    root = root_certificates[0]

    def ou(name: str) -> msp_config_pb2.FabricOUIdentifier:
        return msp_config_pb2.FabricOUIdentifier(
            certificate=root, organizational_unit_identifier=name
        )

    return msp_config_pb2.FabricMSPConfig(
        name=msp_id,
        root_certs=root_certificates,
        fabric_node_ous=msp_config_pb2.FabricNodeOUs(
            enable=True,
            client_ou_identifier=ou("client"),
            peer_ou_identifier=ou("peer"),
            admin_ou_identifier=ou("admin"),
            orderer_ou_identifier=ou("orderer"),
        ),
    )


def _org_group(config: msp_config_pb2.FabricMSPConfig) -> configtx_pb2.ConfigGroup:
    group = configtx_pb2.ConfigGroup()
    group.values["MSP"].value = msp_config_pb2.MSPConfig(
        type=0, config=config.SerializeToString()
    ).SerializeToString()
    return group


def genesis_block(
    channel: str,
    application: list[msp_config_pb2.FabricMSPConfig],
    orderers: list[msp_config_pb2.FabricMSPConfig],
    orderer: Identity,
    rule: int = policies_pb2.ImplicitMetaPolicy.MAJORITY,
) -> common_pb2.Block:
    """Block 0 of ``channel``: its organisations and endorsement rule, signed by the orderer."""
    config = configtx_pb2.Config(sequence=0)
    root = config.channel_group
    for name, members in ((APPLICATION, application), (ORDERER, orderers)):
        group = root.groups[name]
        for member in members:
            group.groups[member.name.removesuffix("MSP")].CopyFrom(_org_group(member))
    root.groups[APPLICATION].policies[ENDORSEMENT_POLICY].policy.CopyFrom(
        policies_pb2.Policy(
            type=policies_pb2.Policy.IMPLICIT_META,
            value=policies_pb2.ImplicitMetaPolicy(
                sub_policy=ENDORSEMENT_POLICY, rule=rule
            ).SerializeToString(),
        )
    )
    creator = protocol.serialize_identity(orderer)
    timestamp = Timestamp()
    timestamp.GetCurrentTime()
    payload = common_pb2.Payload(
        header=common_pb2.Header(
            channel_header=common_pb2.ChannelHeader(
                type=common_pb2.CONFIG, channel_id=channel, timestamp=timestamp
            ).SerializeToString(),
            signature_header=common_pb2.SignatureHeader(creator=creator).SerializeToString(),
        ),
        data=configtx_pb2.ConfigEnvelope(config=config).SerializeToString(),
    ).SerializeToString()
    envelope = common_pb2.Envelope(payload=payload, signature=orderer.sign(payload))
    return blocks.new_block(0, b"", [envelope.SerializeToString()])


@dataclass(frozen=True)
class ChannelConfig:
    """What the genesis block says: the channel, its members and its endorsement rule."""

    channel: str
    application: list[msp_config_pb2.FabricMSPConfig]
    orderers: list[msp_config_pb2.FabricMSPConfig]
    rule: int

    @property
    def all_msps(self) -> list[msp_config_pb2.FabricMSPConfig]:
        return [*self.application, *self.orderers]

    @cached_property
    def writers(self) -> frozenset[str]:
        """The MSP ids that may transact on the channel (Fabric's Writers): its
        organisations', never the orderer organisation's."""
        return frozenset(msp.name for msp in self.application)

    def required_endorsements(self) -> int:
        """How many distinct organisations' peers must endorse under the rule."""
        count = len(self.application)
        if self.rule == policies_pb2.ImplicitMetaPolicy.ANY:
            return 1
        if self.rule == policies_pb2.ImplicitMetaPolicy.ALL:
            return count
        return count // 2 + 1


def read_channel_config(block: common_pb2.Block) -> ChannelConfig:
    """The channel configuration in a genesis block."""
    envelope = common_pb2.Envelope.FromString(block.data.data[0])
    payload = common_pb2.Payload.FromString(envelope.payload)
    header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
    if header.type != common_pb2.CONFIG:
        raise ValueError("block 0 is not a config block")
    root = configtx_pb2.ConfigEnvelope.FromString(payload.data).config.channel_group

    def members(name: str) -> list[msp_config_pb2.FabricMSPConfig]:
        return [
            msp_config_pb2.FabricMSPConfig.FromString(
                msp_config_pb2.MSPConfig.FromString(group.values["MSP"].value).config
            )
            for _, group in sorted(root.groups[name].groups.items())
        ]

    policy = root.groups[APPLICATION].policies[ENDORSEMENT_POLICY].policy
    rule = policies_pb2.ImplicitMetaPolicy.FromString(policy.value).rule
    return ChannelConfig(header.channel_id, members(APPLICATION), members(ORDERER), rule)

"""Identities: organisations' certificate authorities, certificates with roles, wallets.

Everything a FlowBlock user or node signs with is an X.509 certificate on ECDSA P-256
issued by its organisation's CA, with its role as a Fabric CA attribute, kept in a
wallet in Fabric's MSP layout.
"""

from flowblock.identity.authority import (
    CertificateAuthority,
    list_organisations,
    organisation_dir,
    wallet_path,
)
from flowblock.identity.certificates import (
    NODE_ROLES,
    ROLES,
    USER_ROLES,
    msp_id,
    read_attributes,
    role_of,
)
from flowblock.identity.signing import is_low_s, sign, verify
from flowblock.identity.wallet import Identity, load_wallet, write_wallet

__all__ = [
    "NODE_ROLES",
    "ROLES",
    "USER_ROLES",
    "CertificateAuthority",
    "Identity",
    "is_low_s",
    "list_organisations",
    "load_wallet",
    "msp_id",
    "organisation_dir",
    "read_attributes",
    "role_of",
    "sign",
    "verify",
    "wallet_path",
    "write_wallet",
]

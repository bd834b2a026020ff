"""``flowblock identity``: issue, show and list identities of this machine's organisations."""

from __future__ import annotations

from traitlets import Unicode

from flowblock.cli.base import FlowBlockApp
from flowblock.errors import ConfigError, InvalidArgument
from flowblock.identity import (
    USER_ROLES,
    CertificateAuthority,
    Identity,
    list_organisations,
    load_wallet,
    organisation_dir,
    wallet_path,
)


def describe(identity: Identity, path: object) -> str:
    """One line that says who a wallet is and where it lies."""
    return (
        f"{identity.name:<16} {identity.organisation:<12} {identity.role or '-':<11} "
        f"expires {identity.expires:%Y-%m-%d}  {path}"
    )


class IdentityIssueApp(FlowBlockApp):
    name = "flowblock identity issue"
    description = (
        "Issue a new identity: a P-256 key and a certificate signed by the organisation's "
        "CA, with the role as a certificate attribute, written as a wallet in Fabric's "
        "MSP layout under the data directory. An existing identity is never overwritten."
    )
    examples = "flowblock identity issue alice --org University --role researcher"

    org = Unicode(help="Organisation whose CA issues the identity.").tag(config=True)
    role = Unicode(help="Role of the identity: " + ", ".join(USER_ROLES) + ".").tag(config=True)
    aliases = {
        **FlowBlockApp.aliases,
        "org": "IdentityIssueApp.org",
        "role": "IdentityIssueApp.role",
    }

    def start(self) -> None:
        (name,) = self.positional("name")
        if not self.org:
            raise InvalidArgument("--org", "given: the organisation whose CA issues the identity")
        if not self.role:
            raise InvalidArgument("--role", "given: one of " + ", ".join(USER_ROLES))
        if self.role not in USER_ROLES:
            raise InvalidArgument("--role", "one of " + ", ".join(USER_ROLES), self.role)
        authority = CertificateAuthority.load(self.data_path, self.org)
        path = authority.issue_wallet(self.data_path, name, self.role)
        print(describe(load_wallet(path), path))
        if self.role == "patient":
            print(
                f"The certificate names a pseudonym, not {name}; the organisation enrols it "
                f"on the ledger with: flowblock identity enrol {name} --org {self.org}"
            )


class IdentityEnrolApp(FlowBlockApp):
    name = "flowblock identity enrol"
    description = (
        "Enrol patients' identities on the ledger: a patient's certificate names a "
        "pseudonym, never their id, and the organisation records which patient each "
        "pseudonym stands for in its private collection, as one of its stewards (--as). "
        "Needs the stack running; enrolling again changes nothing."
    )
    examples = "flowblock identity enrol patient7 patient8 --org Hospital"

    org = Unicode("Hospital", help="Organisation of the patients.").tag(config=True)
    steward = Unicode("steward", help="Name of the steward whose wallet signs.").tag(config=True)
    aliases = {
        **FlowBlockApp.aliases,
        "org": "IdentityEnrolApp.org",
        "as": "IdentityEnrolApp.steward",
    }

    def start(self) -> None:
        from flowblock.consent import enrol
        from flowblock.ledger import Gateway
        from flowblock.stackfile import read_stack_file

        names = self.extra_args
        if not names:
            raise InvalidArgument("names", "one or more patients' identity names")
        patients = [load_wallet(wallet_path(self.data_path, self.org, name)) for name in names]
        stack = read_stack_file(self.data_path)
        if stack is None:
            raise ConfigError(
                f"FlowBlock is not running for {self.data_path}; start it with 'flowblock demo'."
            )
        steward = wallet_path(self.data_path, self.org, self.steward)
        with Gateway.connect(stack["gateway"], steward, tls_ca=stack.get("tls_ca")) as gateway:
            contract = gateway.get_network(stack.get("channel", "flowblock")).get_contract(
                "flowblock"
            )
            enrolled = enrol(contract, patients)
        print(f"{enrolled} patient(s) of {self.org} enrolled.")


class IdentityShowApp(FlowBlockApp):
    name = "flowblock identity show"
    description = "Load a wallet, check it (key, certificate, CA, validity) and say who it is."
    examples = "flowblock identity show ~/.flowblock/organizations/University/identities/alice"

    def start(self) -> None:
        (path,) = self.positional("wallet")
        print(describe(load_wallet(path), path))


class IdentityListApp(FlowBlockApp):
    name = "flowblock identity list"
    description = "List every identity of every organisation under the data directory."

    def start(self) -> None:
        for org in list_organisations(self.data_path):
            members = organisation_dir(self.data_path, org) / "identities"
            for path in sorted(members.iterdir()) if members.is_dir() else []:
                if path.name.startswith("."):
                    continue
                print(describe(load_wallet(path), path))


class IdentityApp(FlowBlockApp):
    name = "flowblock identity"
    description = "Identities: X.509 certificates with roles, in wallets on disk."
    subcommands = {
        "issue": (IdentityIssueApp, IdentityIssueApp.description.split(":")[0] + "."),
        "enrol": (IdentityEnrolApp, IdentityEnrolApp.description.split(":")[0] + "."),
        "show": (IdentityShowApp, IdentityShowApp.description),
        "list": (IdentityListApp, IdentityListApp.description),
    }

"""The ledger network: organisations and their identities, the embedded devnet for one
machine, and the production Fabric network definition.
"""

"""The ledger network: organisations and their identities, the embedded devnet for one
machine, and the production Fabric network definition.

It may import the core only: it speaks Fabric's protocols (the Gateway, the chaincode
protocol) and never imports the chaincode, the data side, the stack or the fakes.
"""

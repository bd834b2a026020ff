"""The data side, the only place data is touched: S3 storage, the worker that runs
computation tokens, algorithms, disclosure control and differential privacy.

It may import the core alone: it talks to the chaincode only through the ledger, with the
vocabulary both sides share in the core, and imports no front end (extension, hub,
spawner), neither the stack nor the fakes.
"""

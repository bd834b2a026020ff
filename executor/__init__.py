"""The data side, the only place data is touched: S3 storage, the worker that runs
computation tokens, algorithms, disclosure control and differential privacy.
"""

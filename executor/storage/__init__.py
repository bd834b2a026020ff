"""Records in S3: credentials per organisation, the embedded SeaweedFS server, objects.

Import the submodules: ``credentials`` (stdlib only, used by ``network init``),
``seaweedfs`` (runs the embedded S3 server) and ``objects`` (reads and writes through
s3fs), so that what only needs credentials does not pull in the S3 client.
"""

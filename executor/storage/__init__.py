"""Records in S3: the embedded SeaweedFS server and the objects of a bucket.

Import the submodules: ``seaweedfs`` (runs the embedded S3 server) and ``objects``
(reads and writes through s3fs). The organisations' credentials are made with their
identities, in the core (:mod:`flowblock.identity.s3`), since ``network init`` makes them.
"""

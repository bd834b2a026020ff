"""An organisation's records in S3, read and written through s3fs.

Every write returns the SHA-256 of what was stored, which is what goes on the ledger;
``get_verified`` refuses bytes whose hash is not the registered one, naming the
record, so no computation ever runs on data that changed behind the ledger's back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress

import s3fs
from botocore.exceptions import EndpointConnectionError

from flowblock.errors import FlowBlockError
from flowblock.identity.s3 import S3Credentials


class StorageError(FlowBlockError):
    """The object store refused or failed a request."""


class StorageDenied(StorageError):
    """The credentials do not allow this (wrong secret, another organisation's bucket)."""


class RecordTampered(StorageError):
    """An object's bytes do not match the hash registered on the ledger."""

    def __init__(self, key: str, expected: str, found: str) -> None:
        self.key = key
        self.expected = expected
        self.found = found
        super().__init__(
            f"the object {key!r} does not match its registered hash "
            f"(expected {expected[:12]}…, found {found[:12]}…)."
        )


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ObjectStore:
    """One organisation's bucket."""

    def __init__(self, endpoint: str, credentials: S3Credentials) -> None:
        self.endpoint = endpoint
        self.bucket = credentials.bucket
        self._fs = s3fs.S3FileSystem(
            key=credentials.access_key,
            secret=credentials.secret_key,
            client_kwargs={"endpoint_url": endpoint},
            skip_instance_cache=True,
            use_listings_cache=False,
        )

    def _path(self, key: str) -> str:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise StorageError(f"{key!r} is not a valid object key.")
        return f"{self.bucket}/{key}"

    def put(self, key: str, data: bytes) -> str:
        """Store ``data`` under ``key``; returns its SHA-256 (hex) for the ledger."""
        with self._errors(key):
            self._fs.pipe(self._path(key), data)
        return sha256_hex(data)

    def get(self, key: str) -> bytes:
        with self._errors(key):
            return self._fs.cat(self._path(key))

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """Several objects at once (s3fs fetches them concurrently)."""
        keys = list(keys)
        with self._errors(keys[0] if keys else ""):
            found = self._fs.cat([self._path(key) for key in keys])
        prefix = len(self.bucket) + 1
        return {path[prefix:]: data for path, data in found.items()}

    def get_verified(self, key: str, sha256: str) -> bytes:
        """The object, if and only if it still has the hash registered for it."""
        data = self.get(key)
        found = sha256_hex(data)
        if found != sha256:
            raise RecordTampered(key, sha256, found)
        return data

    def delete(self, key: str) -> None:
        """Remove ``key``; removing one that is not there is not an error."""
        with self._errors(key), suppress(FileNotFoundError):
            self._fs.rm(self._path(key))

    def exists(self, key: str) -> bool:
        with self._errors(key):
            return self._fs.exists(self._path(key))

    def list(self, prefix: str = "") -> list[str]:
        """The keys starting with ``prefix``; for a folder (``prefix`` ending in "/") only
        the objects in it, never the folder (SeaweedFS keeps one once it is emptied)."""
        with self._errors(prefix):
            found = self._fs.find(f"{self.bucket}/{prefix}")
        keys = [path[len(self.bucket) + 1 :] for path in found]
        return [key for key in keys if not prefix.endswith("/") or key.startswith(prefix)]

    def _errors(self, key: str):
        return _translated(key, self.bucket)


@contextmanager
def _translated(key: str, bucket: str) -> Iterator[None]:
    """Turn s3fs and botocore failures into one-sentence FlowBlock errors."""
    try:
        yield
    except FlowBlockError:
        raise
    except PermissionError as error:
        raise StorageDenied(
            f"the S3 credentials may not access {key!r} in bucket {bucket!r}."
        ) from error
    except FileNotFoundError as error:
        raise StorageError(f"there is no object {key!r} in bucket {bucket!r}.") from error
    except (OSError, ConnectionError, EndpointConnectionError) as error:
        raise StorageError(
            f"the S3 server did not answer a request for {key!r} in bucket {bucket!r}; the "
            "data organisation's storage is down or unreachable."
            if isinstance(error, EndpointConnectionError)
            else f"the S3 server failed a request for {key!r}: {error}"
        ) from error

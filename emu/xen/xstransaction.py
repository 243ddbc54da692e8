"""A xenstore transaction bound to its client (XsClient.transaction / transactions /
transact): the client's operations with the transaction id filled in, ended on leaving
the `with` block (committed, or aborted on an exception; EAGAIN marks a conflict to
retry when the transaction was started for retrying).
"""

from __future__ import annotations

from typing import List, Optional, Tuple, Union

from .xs_wire import XenstoreError, XenstoreTimeout

Value = Union[str, bytes]


class Transaction:
    """A transaction bound to its client: the same operations, with tx filled in."""

    def __init__(self, client, timeout: Optional[float], retrying: bool):
        self.client = client
        self.timeout = timeout
        self.retrying = retrying
        self.id = 0
        self.committed = False
        self.conflicted = False

    def __enter__(self) -> "Transaction":
        self.id = self.client.transaction_start(self.timeout)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            try:
                self.client.transaction_end(self.id, commit=False, timeout=self.timeout)
            except XenstoreError:
                pass           # e.g. the daemon already forgot it; the original error matters
            if (self.retrying and isinstance(exc, XenstoreError)
                    and exc.errname == "EAGAIN" and not isinstance(exc, XenstoreTimeout)):
                self.conflicted = True
                return True
            return False
        try:
            self.client.transaction_end(self.id, commit=True, timeout=self.timeout)
        except XenstoreError as e:
            if self.retrying and e.errname == "EAGAIN":
                self.conflicted = True
                return False
            raise
        self.committed = True
        return False

    # operations inside the transaction
    def read(self, path: str, default: Optional[str] = None) -> Optional[str]:
        return self.client.read(path, default, self.id, self.timeout)

    def read_bytes(self, path: str) -> bytes:
        return self.client.read_bytes(path, self.id, self.timeout)

    def read_int(self, path: str, default: Optional[int] = None) -> Optional[int]:
        return self.client.read_int(path, default, self.id, self.timeout)

    def exists(self, path: str) -> bool:
        return self.client.exists(path, self.id, self.timeout)

    def read_many(self, paths: List[str]) -> List[Optional[str]]:
        return self.client.read_many(paths, self.id, self.timeout)

    def update_many(self, ops: List[Tuple[str, ...]]) -> None:
        self.client.update_many(ops, self.id, self.timeout)

    def write(self, path: str, value: Union[Value, int]) -> None:
        self.client.write(path, value, self.id, self.timeout)

    def mkdir(self, path: str) -> None:
        self.client.mkdir(path, self.id, self.timeout)

    def rm(self, path: str) -> None:
        self.client.rm(path, self.id, self.timeout)

    def directory(self, path: str) -> List[str]:
        return self.client.directory(path, self.id, self.timeout)

    def get_perms(self, path: str) -> List[str]:
        return self.client.get_perms(path, self.id, self.timeout)

    def set_perms(self, path: str, perms: List[str]) -> None:
        self.client.set_perms(path, perms, self.id, self.timeout)

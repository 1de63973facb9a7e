"""Merkle tree hashing and proofs as RFC 9162 (Certificate Transparency 2.0) defines them.

Leaf hash ``sha256(0x00 || entry)``, interior node ``sha256(0x01 || left || right)``; the tree
over n leaves splits at the largest power of two below n. Inclusion proofs show one entry is in
a tree of a given root; consistency proofs show a tree of size m is a prefix of one of size n —
so whoever holds an old signed root can tell whether the log was rewritten or only extended.

Shared by the hub (which builds proofs), the nodes (which check theirs) and ``datalab audit
verify`` (which checks everything). Hashes travel as lower-case hex.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"").hexdigest()


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class Tree:
    """A growing Merkle tree that remembers the root of every complete (power-of-two) subtree,
    so a root or a proof for any prefix costs O(log² n) hashes instead of O(n)."""

    def __init__(self, leaves: Sequence[bytes] = ()) -> None:
        self.leaves: list[bytes] = list(leaves)
        self._perfect: dict[tuple[int, int], bytes] = {}

    def __len__(self) -> int:
        return len(self.leaves)

    def append(self, leaf: bytes) -> None:
        self.leaves.append(leaf)

    def _mth(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 0:
            return bytes.fromhex(EMPTY_ROOT)
        if n == 1:
            return self.leaves[lo]
        perfect = n & (n - 1) == 0
        if perfect and (lo, hi) in self._perfect:
            return self._perfect[(lo, hi)]
        k = _split(n)
        out = node_hash(self._mth(lo, lo + k), self._mth(lo + k, hi))
        if perfect:
            self._perfect[(lo, hi)] = out
        return out

    def root(self, size: int | None = None) -> bytes:
        return self._mth(0, len(self.leaves) if size is None else size)

    def inclusion(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]) of RFC 9162 section 2.1.3.1."""
        size = len(self.leaves) if size is None else size
        if not 0 <= index < size <= len(self.leaves):
            raise ValueError(f"leaf {index} is not in a tree of size {size}")
        return self._path(index, 0, size)

    def _path(self, m: int, lo: int, hi: int) -> list[bytes]:
        n = hi - lo
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return [*self._path(m, lo, lo + k), self._mth(lo + k, hi)]
        return [*self._path(m - k, lo + k, hi), self._mth(lo, lo + k)]

    def consistency(self, m: int, size: int | None = None) -> list[bytes]:
        """PROOF(m, D[0:size]) of RFC 9162 section 2.1.4.1."""
        size = len(self.leaves) if size is None else size
        if not 0 <= m <= size <= len(self.leaves):
            raise ValueError(f"size {m} is not within a tree of size {size}")
        if m in (0, size):
            return []
        return self._subproof(m, 0, size, True)

    def _subproof(self, m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if complete else [self._mth(lo, hi)]
        k = _split(n)
        if m <= k:
            return [*self._subproof(m, lo, lo + k, complete), self._mth(lo + k, hi)]
        return [*self._subproof(m - k, lo + k, hi, False), self._mth(lo, lo + k)]


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes (already hashed with the 0x00 prefix)."""
    return Tree(leaves).root()


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(index, leaves) of RFC 9162 section 2.1.3.1."""
    return Tree(leaves).inclusion(index)


def consistency_proof(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, leaves) of RFC 9162 section 2.1.4.1 (empty when m is 0 or the whole tree)."""
    return Tree(leaves).consistency(m)


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def verify_consistency(
    m: int, n: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2: the tree of size n (second_root) extends the one of size m."""
    if m > n:
        return False
    if m == n:
        return not proof and first_root == second_root
    if m == 0:
        return not proof
    path = list(proof)
    if m & (m - 1) == 0:  # m is a power of two: the first root is implied
        path.insert(0, first_root)
    if not path:
        return False
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


def hexes(hashes: Sequence[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


def unhex(hashes: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(h) for h in hashes]

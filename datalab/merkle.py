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


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes (already hashed with the 0x00 prefix)."""
    n = len(leaves)
    if n == 0:
        return bytes.fromhex(EMPTY_ROOT)
    level = list(leaves)
    # bottom-up: pair neighbours; an odd last node moves up unchanged (equals RFC's split rule)
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(index, leaves) of RFC 9162 section 2.1.3.1."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError(f"leaf {index} is not in a tree of size {n}")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return [*inclusion_proof(index, leaves[:k]), root(leaves[k:])]
    return [*inclusion_proof(index - k, leaves[k:]), root(leaves[:k])]


def consistency_proof(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, leaves) of RFC 9162 section 2.1.4.1 (empty when m is 0 or the whole tree)."""
    n = len(leaves)
    if not 0 <= m <= n:
        raise ValueError(f"size {m} is not within a tree of size {n}")
    if m in (0, n):
        return []
    return _subproof(m, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), root(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), root(leaves[:k])]


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

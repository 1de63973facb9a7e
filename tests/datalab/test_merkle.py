"""RFC 9162 Merkle hashing and proofs, checked against the RFC's recursive definition for every
tree size up to 40, and against tampering."""

from __future__ import annotations

import hashlib

import pytest

from datalab import merkle


def reference_mth(leaves: list[bytes]) -> bytes:
    """MTH exactly as RFC 9162 section 2.1.1 writes it (over already-hashed leaves)."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + reference_mth(leaves[:k]) + reference_mth(leaves[k:])).digest()


LEAVES = [merkle.leaf_hash(f"entry {i}".encode()) for i in range(40)]


def test_leaf_and_node_prefixes() -> None:
    # sha256(0x00 || "") — the empty entry's leaf hash in Certificate Transparency's test data
    assert merkle.leaf_hash(b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert merkle.node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()
    assert merkle.root([]).hex() == merkle.EMPTY_ROOT


@pytest.mark.parametrize("n", range(41))
def test_root_matches_the_rfc_definition(n: int) -> None:
    assert merkle.root(LEAVES[:n]) == reference_mth(LEAVES[:n])
    tree = merkle.Tree(LEAVES)
    assert tree.root(n) == reference_mth(LEAVES[:n])


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 13, 16, 17, 33])
def test_every_inclusion_proof_verifies_and_tampering_fails(n: int) -> None:
    root = reference_mth(LEAVES[:n])
    for i in range(n):
        proof = merkle.inclusion_proof(i, LEAVES[:n])
        assert merkle.verify_inclusion(i, n, LEAVES[i], proof, root)
        assert not merkle.verify_inclusion(i, n, merkle.leaf_hash(b"forged"), proof, root)
        if n > 1:
            assert not merkle.verify_inclusion((i + 1) % n, n, LEAVES[i], proof, root)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 6, 7, 8, 9, 15, 16, 17, 31, 33])
def test_every_consistency_proof_verifies_and_a_rewritten_history_fails(n: int) -> None:
    big = reference_mth(LEAVES[:n])
    rewritten = list(LEAVES[:n])
    rewritten[0] = merkle.leaf_hash(b"rewritten")
    for m in range(n + 1):
        proof = merkle.consistency_proof(m, LEAVES[:n])
        small = reference_mth(LEAVES[:m])
        assert merkle.verify_consistency(m, n, small, big, proof), (m, n)
        if 0 < m < n:
            other = merkle.consistency_proof(m, rewritten)
            assert not merkle.verify_consistency(m, n, small, reference_mth(rewritten), other)


def test_out_of_range_requests_are_errors() -> None:
    with pytest.raises(ValueError):
        merkle.inclusion_proof(3, LEAVES[:3])
    with pytest.raises(ValueError):
        merkle.consistency_proof(4, LEAVES[:3])
    assert not merkle.verify_consistency(5, 3, b"", b"", [])

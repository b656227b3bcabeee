"""The near-duplicate search finds exactly the pairs of the all-against-all brute force."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from medclass.data import neardup
from medclass.data.neardup import brute_force_pairs, hamming_edges, hamming_pairs


def planted(n: int, rng: np.random.Generator, distances: tuple[int, ...], bits: int = 256) -> np.ndarray:
    """``n`` random hashes of which a tenth are copies of others with exactly ``distances`` bits flipped
    (random 256-bit hashes are otherwise >= ~80 bits apart)."""
    words = rng.integers(0, 2**64, size=(n, bits // 64), dtype=np.uint64)
    k = n // 10
    src, dst = rng.integers(0, n, k), rng.integers(0, n, k)
    flips = rng.choice(distances, size=k)
    for d in np.unique(flips):
        chosen = np.argsort(rng.random((int((flips == d).sum()), bits)), axis=1)[:, :d]
        mask = np.zeros((len(chosen), bits), dtype=bool)
        np.put_along_axis(mask, chosen, True, axis=1)
        words[dst[flips == d]] = words[src[flips == d]] ^ np.packbits(mask, axis=1, bitorder="little").view(np.uint64)
    return words


def sorted_pairs(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int]]:
    return sorted(zip(a.tolist(), b.tolist()))


def test_twenty_thousand_hashes_with_pairs_planted_around_the_threshold():
    words = planted(20_000, np.random.default_rng(0), distances=(0, 3, 15, 16, 17))
    fast = hamming_pairs(words, 16)
    slow = brute_force_pairs(words, 16)
    assert sorted_pairs(*fast) == sorted_pairs(*slow)
    found = np.bincount(neardup._popcount_distance(words, *slow), minlength=17)
    assert min(found[0], found[3], found[15], found[16]) > 100  # planted at, under and far under the threshold
    assert len(slow[0]) < 20_000 // 10  # the copies at 17 bits (a fifth of the planted ones) are left out


@pytest.mark.parametrize(("n", "bits", "d"), [(3000, 256, 0), (3000, 64, 4), (2000, 256, 40), (2000, 128, 9)])
def test_other_thresholds_and_hash_lengths(n, bits, d):
    words = planted(n, np.random.default_rng(d), distances=(max(d - 1, 0), d, d + 1), bits=bits)
    assert sorted_pairs(*hamming_pairs(words, d)) == sorted_pairs(*brute_force_pairs(words, d))


def test_dense_clusters_and_heavy_buckets_stay_exact():
    """Clusters of distinct hashes sharing most bits (similar images) fill buckets past HEAVY; identical hashes
    (blank images) are collapsed; both still give every pair."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 2**64, size=(12, 4), dtype=np.uint64)
    words = base[rng.integers(0, 12, 3000)]
    words[:, 3] = rng.integers(0, 2**64, 3000, dtype=np.uint64) & np.uint64(0xFFF)  # low-entropy last word
    words[:, 2] ^= np.uint64(1) << rng.integers(0, 64, 3000).astype(np.uint64)
    words[:200] = words[0]  # 200 identical hashes
    pairs = hamming_pairs(words, 16)
    assert sorted_pairs(*pairs) == sorted_pairs(*brute_force_pairs(words, 16))
    assert len(pairs[0]) > 200_000


def test_edges_give_the_components_of_all_pairs():
    words = planted(5000, np.random.default_rng(4), distances=(0, 0, 8, 16, 17))
    words[100:400] = words[99]

    def components(a, b):
        graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(len(words), len(words)))
        return connected_components(graph, directed=False)[1]

    a, b = hamming_edges(words, 16)
    assert len(a) < len(brute_force_pairs(words, 16)[0])  # no pair list for the 301 identical hashes
    mine, truth = components(a, b), components(*brute_force_pairs(words, 16))
    assert len(set(zip(mine.tolist(), truth.tolist()))) == len(set(truth.tolist())) == len(set(mine.tolist()))


def test_one_word_hashes_and_empty_input():
    words = np.array([0, 1, 3, 255], dtype=np.uint64)
    assert sorted_pairs(*hamming_pairs(words, 1)) == [(0, 1), (1, 2)]
    assert len(hamming_pairs(np.zeros((0, 4), dtype=np.uint64), 16)[0]) == 0
    assert len(hamming_edges(np.zeros((1, 4), dtype=np.uint64), 16)[0]) == 0

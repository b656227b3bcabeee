"""Exact near-duplicate search over perceptual hashes in near-linear time (multi-index hashing).

:func:`hamming_pairs` returns every pair of hashes at most ``max_distance`` bits apart, exactly the
pairs :func:`brute_force_pairs` (all against all, O(n^2)) returns, without comparing all pairs:

1. **Identical hashes are collapsed** first (distance 0; blank images, copies), so a thousand copies of
   one hash cost one entry, and the search runs over the distinct hashes.
2. **Pigeonhole over blocks** (Norouzi, Punjani & Fleet, "Fast search in Hamming space with multi-index
   hashing", CVPR 2012; in its general form, Qin et al., "GPH", ICDE 2018): the bits are cut into ``m``
   blocks, each with a threshold ``t_i`` in {0, 1} and ``sum(t_i) = d - m + 1``. Two hashes at most ``d``
   apart differ in at most ``t_i`` bits in some block ``i`` (else they would differ in ``>= d + 1``).
   A block with ``t = 0`` is one grouping by its value; a block with ``t = 1`` adds, for each of its
   bits ``j``, a grouping by the block without bit ``j``, pairing the members whose bit ``j`` differs.
   ``m`` is chosen per search by a cost model: sorting passes (``m + b * (d + 1 - m)`` for blocks of
   ``b`` bits) against the candidate pairs random hashes would give (few large blocks at 10^6 hashes,
   ``m = d + 1`` blocks of 15 bits at 10^4). Every grouping is one vectorised sort; no per-row loop.
3. **Heavy buckets** (more than :data:`HEAVY` distinct hashes sharing a key, as similar images give) are
   searched again inside the bucket, on the remaining bits (which must again be within ``d``), down to
   :data:`MAX_DEPTH` levels; past that, and for dense clusters (most of :data:`_SAMPLE` sampled pairs within
   ``d``: the output itself is quadratic there), their pairs are enumerated. A member set already handled
   (the same cluster found through another block) is skipped. Still exact: nothing is capped away.
4. Every candidate is **verified** with a popcount of the whole hash, in chunks of :data:`CHUNK` pairs
   (flat memory), and duplicates (a pair found in two blocks) are removed.

Why not a library: FAISS (``faiss-cpu``, ``IndexBinaryMultiHash``) implements step 2 with ``t = 0`` only
(``m = d + 1`` blocks of 15 bits for 16 of 256 bits), whose candidates grow as ``n^2 / 2^15`` (2.6e8 at
10^6 hashes); it would add a 30 MB binary dependency to the data check for one function, while the
numpy form here is ~300 lines, exact by construction and tested against the brute force.

Example:
    >>> a, b = hamming_pairs(words, max_distance=16)   # words: (n, 4) uint64, 256-bit hashes
    >>> (a < b).all()
    True
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

HEAVY = 64  # a bucket with more distinct hashes than this is searched again on its remaining bits
MAX_DEPTH = 2  # levels of that re-search; deeper buckets have all their pairs verified
CHUNK = 1 << 22  # candidate pairs verified at once
_PAIR_COST = 32.0  # one candidate pair costs about this many sorted elements (cost model)
_SAMPLE = 16  # pairs sampled per heavy bucket to tell a dense cluster from a chance collision
_GOLDEN = 0x9E3779B97F4A7C15
_BRUTE_BLOCK = 512  # rows of the brute-force distance matrix computed at once


def _as_words(words: np.ndarray) -> np.ndarray:
    words = np.asarray(words, dtype=np.uint64)
    return words[:, None] if words.ndim == 1 else words


def _popcount_distance(words: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    distance = np.zeros(len(a), dtype=np.uint16)
    for w in range(words.shape[1]):
        distance += np.bitwise_count(words[a, w] ^ words[b, w])
    return distance


def brute_force_pairs(words: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference: every pair ``i < j`` of rows of ``words`` (``(n, w)`` uint64) at most ``max_distance`` bits apart,
    by comparing all pairs (O(n^2) time, O(512 n) memory). For tests and benchmarks; use :func:`hamming_pairs`."""
    hashes = _as_words(words)
    firsts, seconds = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for start in range(0, len(hashes), _BRUTE_BLOCK):
        block = hashes[start : start + _BRUTE_BLOCK]
        distance = np.zeros((len(block), len(hashes)), dtype=np.uint16)
        for w in range(hashes.shape[1]):
            distance += np.bitwise_count(block[:, None, w] ^ hashes[None, :, w])
        i, j = np.nonzero(distance <= max_distance)
        i += start
        keep = i < j
        firsts.append(i[keep])
        seconds.append(j[keep])
    return np.concatenate(firsts), np.concatenate(seconds)


def _ragged(first: np.ndarray, count: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pairs ``(p, first[p] + k)`` for ``k < count[p]``, in chunks of about :data:`CHUNK` pairs."""
    nz = np.flatnonzero(count)
    first, count = first[nz], count[nz].astype(np.int64)
    ends = np.cumsum(count)
    start = 0
    while start < len(nz):
        stop = max(start + 1, int(np.searchsorted(ends, ends[start] - count[start] + CHUNK, side="right")))
        c = count[start:stop]
        p = np.repeat(nz[start:stop], c)
        q = np.repeat(first[start:stop], c) + (np.arange(len(p)) - np.repeat(np.cumsum(c) - c, c))
        yield p, q
        start = stop


def _run_bounds(new_run: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run id, start and end (exclusive) of every position, from a boolean 'a new run starts here'."""
    run = np.cumsum(new_run) - 1
    starts = np.flatnonzero(new_run)
    ends = np.append(starts[1:], len(new_run))
    return run, starts[run], ends[run]


def _bit_runs(positions: np.ndarray) -> list[tuple[int, int, int]]:
    """``(word, low bit, length)`` of each stretch of consecutive bit positions inside one 64-bit word."""
    out: list[tuple[int, int, int]] = []
    for p in positions.tolist():
        if out and out[-1][0] * 64 + out[-1][1] + out[-1][2] == p and p % 64:
            out[-1] = (out[-1][0], out[-1][1], out[-1][2] + 1)
        else:
            out.append((p // 64, p % 64, 1))
    return out


def _block_value(cols: np.ndarray, rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The bits ``positions`` (at most 64) of the hashes ``rows``, packed into one uint64 each."""
    value, shift = np.zeros(len(rows), dtype=np.uint64), 0
    for word, low, length in _bit_runs(positions):
        part = (cols[word][rows] >> np.uint64(low)) & np.uint64((1 << length) - 1)
        value |= part << np.uint64(shift)
        shift += length
    return value


def _plan(n_rows: int, n_pairs: float, n_bits: int, d: int) -> list[tuple[np.ndarray, int]] | None:
    """Blocks ``(bit indices into the available bits, threshold)`` of the cheapest exact plan, or None when
    the bits are too few to cut (then every pair must be checked)."""
    best, plan = np.inf, None
    for m in range(max(1, -(-(d + 1) // 2), -(-n_bits // 64)), min(max(d + 1, -(-n_bits // 64)), n_bits) + 1):
        ones = max(0, d + 1 - m)  # blocks searched at distance 1, the rest at distance 0
        b = n_bits / m
        groupings = m + ones * b
        cost = groupings * (n_rows + _PAIR_COST * n_pairs * 2.0 ** -b)
        if cost < best:
            best, plan = cost, [(idx, int(i < ones)) for i, idx in enumerate(np.array_split(np.arange(n_bits), m))]
    return plan


class _Search:
    """Candidate pairs among distinct hashes (``cols``: ``(words, n)`` uint64), verified at distance ``d``."""

    def __init__(self, words: np.ndarray, d: int) -> None:
        self.words, self.d = words, d
        self.cols = np.ascontiguousarray(words.T)
        self.found: list[np.ndarray] = []  # verified pairs, as codes lo * n + hi
        self.seen: dict[int, list[np.ndarray]] = {}  # signature -> sorted member sets of heavy buckets searched
        self.seen_signatures = np.zeros(0, dtype=np.uint64)

    def verify(self, a: np.ndarray, b: np.ndarray) -> None:
        keep = _popcount_distance(self.words, a, b) <= self.d
        lo, hi = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
        self.found.append(lo.astype(np.int64) * len(self.words) + hi)

    def all_pairs(self, rows: np.ndarray, group: np.ndarray) -> None:
        order = np.argsort(group, kind="stable")
        rows, group = rows[order], group[order]
        ends = _run_bounds(np.r_[True, group[1:] != group[:-1]])[2]
        pos = np.arange(len(rows))
        for p, q in _ragged(pos + 1, ends - pos - 1):
            self.verify(rows[p], rows[q])

    def search(self, rows: np.ndarray, group: np.ndarray, bits: np.ndarray, depth: int = 0) -> None:
        """Find every pair within ``d`` on ``bits`` among ``rows`` of the same ``group`` (ids ``0..G-1``)."""
        sizes = np.bincount(group)
        plan = _plan(len(rows), float((sizes * (sizes - 1) // 2).sum()), len(bits), self.d)
        if plan is None or depth >= MAX_DEPTH:
            self.all_pairs(rows, group)
            return
        group_bits = int(len(sizes) - 1).bit_length()  # 0: one group
        for idx, threshold in plan:
            block = bits[idx]
            value = _block_value(self.cols, rows, block)
            rest = np.delete(bits, idx)
            self.grouping(rows, group, group_bits, value, len(block), -1, rest, depth)
            for j in range(len(block) if threshold else 0):
                self.grouping(rows, group, group_bits, value, len(block), j, rest, depth)

    def grouping(self, rows: np.ndarray, group: np.ndarray, group_bits: int, value: np.ndarray, b: int, j: int,
                 rest: np.ndarray, depth: int) -> None:
        """Group by (group, block value) (``j = -1``), or by (group, block without bit ``j``) pairing members whose
        bit ``j`` differs; verify the pairs of light buckets and search heavy ones again on ``rest``."""
        key = value if j < 0 else value & ~np.uint64(1 << j)
        idx_bits = max(1, (len(rows) - 1).bit_length())
        if group_bits + b + idx_bits <= 64:  # one sort of (group, key, index) packed in a uint64
            if group_bits:
                key = (group.astype(np.uint64) << np.uint64(b)) | key
            packed = np.sort((key << np.uint64(idx_bits)) | np.arange(len(rows), dtype=np.uint64))
            bucket = packed >> np.uint64(idx_bits)
            same = bucket[1:] == bucket[:-1]
            edge = np.flatnonzero(same)
            pos = _sorted_unique(np.concatenate([edge, edge + 1]))  # members of buckets of two or more
            order = (packed[pos] & np.uint64((1 << idx_bits) - 1)).astype(np.int64)
        else:
            order = np.lexsort((key, group))
            k, g = key[order], group[order]
            same = (k[1:] == k[:-1]) & (g[1:] == g[:-1])
            edge = np.flatnonzero(same)
            pos = _sorted_unique(np.concatenate([edge, edge + 1]))
            order = order[pos]
        if not len(pos):
            return
        run, starts, ends = _run_bounds(np.r_[True, ~same[pos[:-1]]])
        if j >= 0:  # side 0 (bit j clear) before side 1 inside each bucket
            side = (value[order] >> np.uint64(j)) & np.uint64(1)
            resort = np.lexsort((side, run))
            order, side = order[resort], side[resort].astype(bool)
        size = ends - starts
        heavy = size > HEAVY
        light = ~heavy
        srows = rows[order]
        at = np.arange(len(order))
        if j < 0:
            first, count = at + 1, np.where(light, ends - at - 1, 0)
        else:  # pair side 0 with side 1: side-1 members start at the first position of the bucket with the bit set
            one_start = np.minimum.reduceat(np.where(side, at, ends), np.flatnonzero(np.r_[True, run[1:] != run[:-1]]))
            one_start = one_start[run]
            first, count = one_start, np.where(light & ~side, ends - one_start, 0)
        for p, q in _ragged(first, count):
            self.verify(srows[p], srows[q])
        if heavy.any():
            self.heavy(srows[heavy], run[heavy], rest, depth)

    def heavy(self, rows: np.ndarray, run: np.ndarray, rest: np.ndarray, depth: int) -> None:
        """Buckets of more than :data:`HEAVY` members (``rows`` grouped by ``run``): skip a member set already
        searched (other blocks find the same cluster), verify all pairs of dense ones (most sampled pairs are
        near-duplicates: a re-search cannot shrink the output), search the others again on ``rest``."""
        new = np.r_[True, run[1:] != run[:-1]]
        run, starts, ends = _run_bounds(new)
        first, size = starts[new], (ends - starts)[new]
        signature = np.add.reduceat(_mix(rows), first) ^ (size.astype(np.uint64) * np.uint64(_GOLDEN))
        todo = np.ones(len(first), dtype=bool)
        for k in np.flatnonzero(np.isin(signature, self.seen_signatures)):  # exact check of a signature match
            members = np.sort(rows[first[k] : first[k] + size[k]])
            todo[k] = not any(np.array_equal(members, m) for m in self.seen[int(signature[k])])
        for k in np.flatnonzero(todo):
            self.seen.setdefault(int(signature[k]), []).append(np.sort(rows[first[k] : first[k] + size[k]]))
        self.seen_signatures = np.fromiter(self.seen, dtype=np.uint64, count=len(self.seen))
        rng = np.random.default_rng(depth)
        i = first[:, None] + (rng.random((len(first), _SAMPLE)) * size[:, None]).astype(np.int64)
        j = first[:, None] + (rng.random((len(first), _SAMPLE)) * size[:, None]).astype(np.int64)
        near = (_popcount_distance(self.words, rows[i.ravel()], rows[j.ravel()]) <= self.d).reshape(i.shape)
        dense = near.mean(axis=1) > 0.5
        keep_run = todo & ~dense, todo & dense
        for mode, chosen in zip(("search", "all"), keep_run):
            member = chosen[run]
            if not member.any():
                continue
            sub_group = _run_bounds(np.r_[True, np.diff(run[member]) != 0])[0]  # run is sorted: ids 0..G-1
            if mode == "all" or depth + 1 >= MAX_DEPTH:
                self.all_pairs(rows[member], sub_group)
            else:
                self.search(rows[member], sub_group, rest, depth + 1)


def _mix(values: np.ndarray) -> np.ndarray:
    """A 64-bit mix (splitmix64 finaliser) of each value."""
    x = values.astype(np.uint64) * np.uint64(_GOLDEN)
    x ^= x >> np.uint64(31)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    return x ^ (x >> np.uint64(29))


def _collapse(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct hashes and the index of each row's hash among them (rows sorted by a 64-bit mix of the words;
    a mix collision can leave two equal hashes distinct, which the search then pairs at distance 0)."""
    if not len(words):
        return words, np.zeros(0, dtype=np.int64)
    mix = np.zeros(len(words), dtype=np.uint64)
    for w in range(words.shape[1]):
        mix = _mix(mix ^ words[:, w])
    order = np.argsort(mix, kind="stable")
    ordered = words[order]
    new = np.r_[True, (ordered[1:] != ordered[:-1]).any(axis=1)]
    inverse = np.empty(len(words), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return ordered[new], inverse


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if len(values) else values


def _distinct_pairs(distinct: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(distinct)
    search = _Search(distinct, max_distance)
    if n > 1:
        search.search(np.arange(n), np.zeros(n, dtype=np.int64), np.arange(64 * distinct.shape[1]))
    codes = _sorted_unique(np.concatenate([np.zeros(0, dtype=np.int64), *search.found]))
    return codes // max(n, 1), codes % max(n, 1)


def hamming_edges(words: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges ``(a, b)`` between rows whose connected components are those of :func:`hamming_pairs`, without listing
    every pair of identical hashes: each row is joined to the first row of its hash, and the first rows of hashes
    within ``max_distance`` to each other. O(n log n) for random hashes."""
    words = _as_words(words)
    distinct, inverse = _collapse(words)
    first_row = np.full(len(distinct), len(words), dtype=np.int64)
    np.minimum.at(first_row, inverse, np.arange(len(words)))
    u, v = _distinct_pairs(distinct, max_distance)
    star = np.flatnonzero(first_row[inverse] != np.arange(len(words)))
    return np.concatenate([first_row[u], first_row[inverse[star]]]), np.concatenate([first_row[v], star])


def hamming_pairs(words: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``i < j`` of rows of ``words`` (``(n, w)`` uint64, or ``(n,)`` for 64-bit hashes) at most
    ``max_distance`` bits apart, sorted; the same pairs as :func:`brute_force_pairs`.

    >>> words = np.array([[0], [1], [3], [255]], dtype=np.uint64)
    >>> [list(x) for x in hamming_pairs(words, 1)]
    [[0, 1], [1, 2]]
    """
    words = _as_words(words)
    n = len(words)
    distinct, inverse = _collapse(words)
    order = np.argsort(inverse, kind="stable")  # rows of each distinct hash are order[start[u]:start[u] + count[u]]
    count = np.bincount(inverse, minlength=len(distinct))
    start = np.cumsum(count) - count
    u, v = _distinct_pairs(distinct, max_distance)
    codes = [np.zeros(0, dtype=np.int64)]
    pos = np.arange(n)
    _, _, ends = _run_bounds(np.r_[True, inverse[order][1:] != inverse[order][:-1]])
    for p, q in _ragged(pos + 1, ends - pos - 1):  # rows of one hash: distance 0
        codes.append(np.minimum(order[p], order[q]) * n + np.maximum(order[p], order[q]))
    for k, i in _ragged(start[u], count[u]):  # every row of hash u[k] ...
        for k2, i2 in _ragged(start[v[k]], count[v[k]]):  # ... with every row of hash v[k]
            a, b = order[i[k2]], order[i2]
            codes.append(np.minimum(a, b) * n + np.maximum(a, b))
    code = _sorted_unique(np.concatenate(codes))
    return code // max(n, 1), code % max(n, 1)


__all__ = ["brute_force_pairs", "hamming_edges", "hamming_pairs"]

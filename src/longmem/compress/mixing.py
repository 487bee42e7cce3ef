"""Context models mixed with the LSTM's prediction, for `longmem compress` (archive format 3).

The models, each a distribution over the V symbols of each segment's next symbol:

- for each order k (`orders`), counts of which symbol followed each context of the
  last k symbols; its input is log(count + ALPHA);
- two word models: the same counts for the word so far (letters, case folded, and
  every byte from 128 up, so UTF-8 letters count) and for it with the word before;
- a match model: the longest recent earlier occurrence of the last MATCH_MIN or more
  symbols (in any segment) predicts the symbol that followed it, its input MATCH_INPUT
  for that symbol and 0 for the others;
- the LSTM's log-probabilities.

They are mixed geometrically, as PAQ's mixers do: log p = sum_m w_m x_m - log Z.
Each weight w_m is a sum of three learned terms, chosen by what the moment looks
like: how many count models have seen their context, the symbol before, and model
m's own confidence (for a count model, how often its context was seen and how many
different symbols followed it; for the match model, the match's length). Then
secondary estimation (PAQ's APMs) corrects the mixture: it is taken as a chain of
binary splits down a tree of the symbols, and each split's probability is mapped
through two learned piecewise-linear curves, one per tree node and one per node and
symbol before, and averaged with it (a quarter the split, three quarters the
curves). Everything is learned online from the symbols as they are coded: the
weights by gradient descent on the bits the final probabilities spend (at a rate
that starts BOOST times higher and settles over the first few thousand columns),
the curves by moving their two nearest points towards each split's outcome.

Memory is bounded: the counts live in one hashed table of `memory` MB shared by every
model (rows of V uint8 counts, halved when one reaches 255), in buckets of two rows;
a context whose 32-bit check matches neither row of its bucket replaces the one that
has seen less. The match model keeps the last MATCH_WINDOW symbols, over all segments.

Everything runs in numba-compiled loops over NumPy arrays in a fixed order, in
float64, on both sides, so the encoder's probabilities equal the decoder's; numba's
version is part of the archive's fingerprint. Changing a constant here or the order
of any sum changes every archive: that needs a new archive format.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

ALPHA = 0.005  # added to every count: a context seen once already speaks clearly
RATE = 0.00025  # of the mixing weights, per coded symbol, once settled
BOOST, SETTLE = 4.0, 500.0  # the rate at column c is RATE * (1 + BOOST / (1 + c / SETTLE))
APM_RATE = 0.01  # of the secondary estimation's curves
APM_POINTS = 33  # points of each curve, evenly spaced in log-odds from -8 to 8
START_WEIGHT = 0.15
MATCH_MIN = 7  # symbols: the shortest context the match model looks up
MATCH_INPUT = 4.0  # the match model's input for the symbol it predicts (0 for the others)
MATCH_VERIFY = 32  # symbols compared backwards to measure a new match
MATCH_SLOTS = 1 << 20  # entries of the match model's hash table
MATCH_WINDOW = 1 << 24  # symbols of history kept for the match model, over all segments
WORDS = 2  # word models: the word so far, and the word so far with the one before
CONFIDENCES = 32  # buckets of a count model's confidence: 8 of its total times 4 of how many symbols
LENGTHS = 16  # buckets of the match length (its confidence)
LIMIT = 255  # a count that reaches this halves its row
BEFORE = 257  # contexts of the secondary estimation's second curves: the symbol before (V: none), modulo this

_MULT = np.uint64(0x9E3779B97F4A7C15)
_FINAL = np.uint64(0xBF58476D1CE4E5B9)
_WORD_TAG, _WORDS_TAG = np.uint64(1000003), np.uint64(2000003)  # keep the word models' hashes apart


class Tables(NamedTuple):
    """The state both sides keep, all arrays, passed whole to the compiled loops."""

    history: np.ndarray  # (B, H) int64: each segment's last H symbols, newest first (V before the start)
    words: np.ndarray  # (B, 2) uint64: the hash of the word so far and of the word before
    ring: np.ndarray  # (B, R) uint8 (int32 over 256 symbols): each segment's last R symbols, at position % R
    position: np.ndarray  # (B,) int64: symbols coded in each segment
    match: np.ndarray  # (B, 3) int64: the matched segment, the position it predicts, the length (0: none)
    slots: np.ndarray  # (MATCH_SLOTS,) int64: context hash -> 1 + (segment << 40 | position after it)
    counts: np.ndarray  # (N, V) uint8: the hashed count rows
    checks: np.ndarray  # (N,) uint32: which context holds each row
    seen: np.ndarray  # (N,) uint8: how much each row has seen (saturating), to choose which to replace
    letters: np.ndarray  # (V,) int64: a letter's case-folded byte, 0 for the others
    orders: np.ndarray  # (K,) int64, ascending
    weights: np.ndarray  # (S, M) float64: the weight sets, rows chosen by the two selectors
    confidence: np.ndarray  # (M, CONFIDENCES) float64: the per-model confidence terms
    # of the symbol being coded, from mix to update:
    rows: np.ndarray  # (B, K + WORDS) int64: the row of each context (-1 - row: to be taken over)
    wanted: np.ndarray  # (B, K + WORDS) uint32: each context's check
    inputs: np.ndarray  # (B, M, V) float64: each model's input
    chosen: np.ndarray  # (B, 2) int64: the weight rows chosen
    confident: np.ndarray  # (B, M) int64: the confidence bucket of each model
    p: np.ndarray  # (B, V) float64: the mixture
    splits: np.ndarray  # (B, 3P) float64: the tree's subtree sums [0, 2P), its corrected splits [2P, 3P)
    curves: np.ndarray  # (C, P, APM_POINTS) float64: per node (row 0), per node and symbol before (`_before`)
    clock: np.ndarray  # (1,) float64: columns learned from


def table_rows(memory_mb: int, symbols: int) -> int:
    """Rows of counts that `memory_mb` holds (an even number, at least 2)."""
    return max(2, memory_mb * 2**20 // (symbols + 5) // 2 * 2)


def _leaves(symbols: int) -> int:
    """Leaves of the secondary estimation's tree: the symbols, padded to a power of two."""
    return 1 << int(np.ceil(np.log2(max(2, symbols))))


def _ring_length(segments: int) -> int:
    return max(1 << 12, 1 << int(np.log2(max(1, MATCH_WINDOW // segments))))


class Mixer:
    """The context models of `orders` and the rest over `symbols` symbols in `segments` rows;
    `letters` gives each symbol's case-folded byte when it is a letter, 0 when not."""

    def __init__(self, symbols: int, segments: int, orders: list[int], memory_mb: int, letters: np.ndarray):
        V, B = symbols, segments
        orders = np.array(sorted(orders), np.int64)
        K = len(orders)
        M = K + WORDS + 2  # the count models, the word models, the match model, the LSTM
        N = table_rows(memory_mb, V)
        self.t = Tables(
            history=np.full((B, max(MATCH_VERIFY, MATCH_MIN, int(orders.max(initial=1)))), V, np.int64),
            words=np.zeros((B, 2), np.uint64),
            ring=np.zeros((B, _ring_length(B)), np.uint8 if V <= 256 else np.int32),
            position=np.zeros(B, np.int64),
            match=np.zeros((B, 3), np.int64),
            slots=np.zeros(MATCH_SLOTS, np.int64),
            counts=np.zeros((N, V), np.uint8),
            checks=np.zeros(N, np.uint32),
            seen=np.zeros(N, np.uint8),
            letters=np.asarray(letters, np.int64),
            orders=orders,
            weights=np.full((K + WORDS + 1 + (V + 1), M), START_WEIGHT),
            confidence=np.zeros((M, CONFIDENCES)),
            rows=np.zeros((B, K + WORDS), np.int64),
            wanted=np.zeros((B, K + WORDS), np.uint32),
            inputs=np.zeros((B, M, V)),
            chosen=np.zeros((B, 2), np.int64),
            confident=np.zeros((B, M), np.int64),
            p=np.zeros((B, V)),
            splits=np.zeros((B, 3 * _leaves(V))),
            curves=np.tile(1 / (1 + np.exp(-np.linspace(-8, 8, APM_POINTS))),
                           (1 + min(V + 1, BEFORE), _leaves(V), 1)),
            clock=np.zeros(1),
        )

    def mix(self, lstm_log_p: np.ndarray, real: np.ndarray) -> np.ndarray:
        """The mixed distribution of each segment's next symbol, (B, V) float64, from the
        LSTM's log-probabilities (B, V); rows not `real` (past the data's end) are left as they were."""
        _mix(self.t, np.ascontiguousarray(lstm_log_p, np.float64), real)
        return self.t.p.copy()

    def update(self, codes: np.ndarray, real: np.ndarray) -> None:
        """Learn from the symbols `codes` (B,) just coded where `real`, after `mix`."""
        _learn(self.t, codes.astype(np.int64), real)


def letter_codes(symbols) -> np.ndarray:
    """For each symbol (a byte value or a one-character string), its case-folded code
    when it is a letter (ASCII letters, and bytes or characters from 128 up), 0 when not."""
    out = np.zeros(len(symbols), np.int64)
    for i, s in enumerate(symbols):
        code = s if isinstance(s, (int, np.integer)) else ord(s)
        if 65 <= code <= 90:
            out[i] = code + 32
        elif 97 <= code <= 122 or code >= 128:
            out[i] = code
    return out


@numba.njit(cache=True, inline="always")
def _final(h):
    """A 64-bit finaliser (splitmix's), so that the row and the check use well-mixed bits."""
    h ^= h >> np.uint64(31)
    h *= _FINAL
    h ^= h >> np.uint64(29)
    return h


@numba.njit(cache=True, inline="always")
def _find(t, b, m, h):
    """Look up the context hashed `h` for model m of segment b: its row, or -1 - the row
    of its bucket that it would take over."""
    n = np.uint64(t.counts.shape[0] // 2)
    first = np.int64((h >> np.uint64(32)) % n) * 2
    check = np.uint32(h & np.uint64(0xFFFFFFFF))
    t.wanted[b, m] = check
    for row in (first, first + 1):
        if t.checks[row] == check and t.seen[row] > 0:
            return row
    return -1 - (first if t.seen[first] <= t.seen[first + 1] else first + 1)


@numba.njit(cache=True)
def _mix(t, lstm, real):
    B, V = t.p.shape
    K = t.orders.shape[0]
    M = t.inputs.shape[1]
    R = t.ring.shape[1]
    log_alpha = np.log(ALPHA)
    for b in range(B):
        if not real[b]:
            continue
        h = np.uint64(0)
        j = 0
        for k in range(K):
            while j < t.orders[k]:
                h = (h + np.uint64(t.history[b, j]) + np.uint64(1)) * _MULT
                j += 1
            t.rows[b, k] = _find(t, b, k, _final(h + np.uint64(t.orders[k]) * _FINAL))
        word, last_word = t.words[b, 0], t.words[b, 1]
        t.rows[b, K] = _find(t, b, K, _final(word + _WORD_TAG))
        t.rows[b, K + 1] = _find(t, b, K + 1, _final(word * _MULT + last_word + _WORDS_TAG))
        known = 0
        for m in range(K + WORDS):
            row = t.rows[b, m]
            total, kinds = 0, 0
            if row >= 0:
                for v in range(V):
                    c = t.counts[row, v]
                    total += c
                    kinds += c > 0
                    t.inputs[b, m, v] = np.log(c + ALPHA)
            else:
                for v in range(V):
                    t.inputs[b, m, v] = log_alpha
            known += total > 0
            bucket = 0
            while total > 0 and bucket < CONFIDENCES // 4 - 1:
                bucket += 1
                total >>= 1
            t.confident[b, m] = 4 * bucket + (0 if kinds <= 1 else 1 if kinds == 2 else 2 if kinds <= 4 else 3)
        matcher = K + WORDS
        for v in range(V):
            t.inputs[b, matcher, v] = 0.0
        length = t.match[b, 2]
        if length > 0:
            t.inputs[b, matcher, t.ring[t.match[b, 0], t.match[b, 1] % R]] = MATCH_INPUT
        t.confident[b, matcher] = 0 if length == 0 else min(LENGTHS - 1, 1 + length // 3)
        for v in range(V):
            t.inputs[b, matcher + 1, v] = lstm[b, v]
        t.confident[b, matcher + 1] = 0
        t.chosen[b, 0] = known
        t.chosen[b, 1] = K + WORDS + 1 + t.history[b, 0]
        top = -np.inf
        for v in range(V):
            z = 0.0
            for m in range(M):
                w = t.weights[t.chosen[b, 0], m] + t.weights[t.chosen[b, 1], m] + \
                    t.confidence[m, t.confident[b, m]]
                z += w * t.inputs[b, m, v]
            t.p[b, v] = z
            top = max(top, z)
        total_p = 0.0
        for v in range(V):
            t.p[b, v] = np.exp(t.p[b, v] - top)
            total_p += t.p[b, v]
        for v in range(V):
            t.p[b, v] /= total_p
        _refine(t, b, V)


@numba.njit(cache=True, inline="always")
def _curve_point(split):
    """Where a split's probability falls on a curve: the point below it and the fraction
    of the way to the next."""
    split = min(max(split, 1e-6), 1 - 1e-6)
    at = (min(max(np.log(split / (1 - split)), -7.999), 7.999) + 8.0) * (APM_POINTS - 1) / 16.0
    return int(at), at - int(at)


@numba.njit(cache=True, inline="always")
def _before(t, b):
    """The row of segment b's second curves: 1 + the symbol before, folded into the table."""
    return 1 + t.history[b, 0] % (t.curves.shape[0] - 1)


@numba.njit(cache=True)
def _refine(t, b, V):
    """Secondary estimation of segment b's mixture, in place (see the module's docstring)."""
    P = t.curves.shape[1]
    S = t.splits[b]
    for i in range(P):
        S[P + i] = t.p[b, i] if i < V else 0.0
    for n in range(P - 1, 0, -1):
        S[n] = S[2 * n] + S[2 * n + 1]
    before = _before(t, b)
    for n in range(1, P):
        if S[2 * n] <= 0.0 or S[2 * n + 1] <= 0.0:  # a side without symbols
            S[2 * P + n] = 1.0 if S[2 * n + 1] > 0.0 else 0.0
            continue
        split = S[2 * n + 1] / S[n]
        j, f = _curve_point(split)
        curves = (1 - f) * (t.curves[0, n, j] + t.curves[before, n, j]) + \
            f * (t.curves[0, n, j + 1] + t.curves[before, n, j + 1])
        S[2 * P + n] = 0.25 * split + 0.375 * curves
    total = 0.0
    for v in range(V):
        q, n = 1.0, P + v
        while n > 1:
            q *= S[2 * P + (n >> 1)] if n & 1 else 1.0 - S[2 * P + (n >> 1)]
            n >>= 1
        t.p[b, v] = q
        total += q
    for v in range(V):
        t.p[b, v] /= total


@numba.njit(cache=True)
def _learn_curves(t, b, x):
    """Move the curves' points that segment b's splits used towards the symbol x's path."""
    P = t.curves.shape[1]
    S = t.splits[b]
    before = _before(t, b)
    n = P + x
    while n > 1:
        node, right = n >> 1, n & 1
        if S[2 * node] > 0.0 and S[2 * node + 1] > 0.0:
            j, f = _curve_point(S[2 * node + 1] / S[node])
            for row in (0, before):
                t.curves[row, node, j] += APM_RATE * (1 - f) * (right - t.curves[row, node, j])
                t.curves[row, node, j + 1] += APM_RATE * f * (right - t.curves[row, node, j + 1])
        n = node


@numba.njit(cache=True)
def _learn(t, codes, real):
    B, V = t.p.shape
    K = t.orders.shape[0]
    M = t.inputs.shape[1]
    R = t.ring.shape[1]
    H = t.history.shape[1]
    t.clock[0] += 1.0
    rate = RATE * (1.0 + BOOST / (1.0 + t.clock[0] / SETTLE))
    for b in range(B):
        if not real[b]:
            continue
        x = codes[b]
        _learn_curves(t, b, x)
        for m in range(M):  # as if the mixture were p: d(-log p(x)) / d(w_m) = E_p[x_m] - x_m(x)
            expected = 0.0
            for v in range(V):
                expected += t.p[b, v] * t.inputs[b, m, v]
            step = rate * (expected - t.inputs[b, m, x])
            for s in range(2):
                t.weights[t.chosen[b, s], m] -= step
            t.confidence[m, t.confident[b, m]] -= step
        for m in range(K + WORDS):
            row = t.rows[b, m]
            if row < 0:  # a new context takes the row over
                row = -1 - row
                t.counts[row, :] = 0
                t.checks[row] = t.wanted[b, m]
                t.seen[row] = 0
            if t.counts[row, x] >= LIMIT:
                for v in range(V):
                    t.counts[row, v] = (t.counts[row, v] + 1) >> 1
            t.counts[row, x] += 1
            t.seen[row] = min(255, t.seen[row] + 1)
        if t.match[b, 2] > 0:  # a match goes on while it predicts right
            if t.ring[t.match[b, 0], t.match[b, 1] % R] == x:
                t.match[b, 1] += 1
                t.match[b, 2] += 1
            else:
                t.match[b, 2] = 0
        here = t.position[b]
        t.ring[b, here % R] = x
        t.position[b] = here = here + 1
        for j in range(H - 1, 0, -1):
            t.history[b, j] = t.history[b, j - 1]
        t.history[b, 0] = x
        if here >= MATCH_MIN:
            h = np.uint64(0)
            for j in range(MATCH_MIN):
                h = (h + np.uint64(t.history[b, j]) + np.uint64(1)) * _MULT
            slot = np.int64(_final(h) % np.uint64(MATCH_SLOTS))
            if t.match[b, 2] == 0 and t.slots[slot] > 0:
                other = (t.slots[slot] - 1) >> 40
                at = (t.slots[slot] - 1) & ((1 << 40) - 1)
                if t.position[other] - at < R:  # still in the other's history
                    length = 0
                    while length < MATCH_VERIFY and length < at and \
                            t.ring[other, (at - 1 - length) % R] == t.history[b, length]:
                        length += 1
                    if length >= MATCH_MIN:
                        t.match[b, 0], t.match[b, 1], t.match[b, 2] = other, at, length
            t.slots[slot] = 1 + (b << 40 | here)
        letter = t.letters[x]
        if letter > 0:
            t.words[b, 0] = (t.words[b, 0] + np.uint64(letter)) * _MULT
        elif t.words[b, 0] != 0:
            t.words[b, 1] = t.words[b, 0]
            t.words[b, 0] = np.uint64(0)

"""The context models of archive format 2, kept unchanged so that those archives still decode
(format 3 has `mixing.py`).

For each order k, a table counts which symbol followed each context of the
last k symbols seen so far in the same segment; its prediction is
(count + ALPHA) / (total + ALPHA * V). These predictions and the LSTM's are
mixed geometrically, as in PAQ's mixers: log p = sum_i w_i log p_i - log Z,
with the weights learned online by gradient descent on the bits spent, one
set of weights per number of orders whose context has been seen before (a
model is trusted according to what it knows). Short contexts are what a
young LSTM knows least and counts learn fastest, so the mixture gains most
early in a file.

Everything is NumPy float64 in a fixed order on both sides, so the encoder's
probabilities equal the decoder's. Changing ALPHA, RATE or the hashing
changes every archive: those need a new archive format.
"""

from __future__ import annotations

import numpy as np

ALPHA = 0.05  # added to every count: small, so that a context seen once already speaks clearly
RATE = 0.002  # of the mixing weights, per coded symbol
START_WEIGHT = 0.3
_MULT = np.uint64(0x9E3779B97F4A7C15)
_HALVE_AT = 60_000  # counts are uint16: a row whose largest count reaches this is halved


class Mixer:
    """Context models of the given orders over `symbols` symbols in `segments` rows."""

    def __init__(self, symbols: int, segments: int, orders: list[int]):
        self.V, self.B, self.orders = symbols, segments, sorted(orders)
        self.history = np.zeros((segments, max(self.orders)), np.uint64)  # most recent first
        # Each context of order k as a polynomial in the multiplier, with the symbols
        # (plus 1) as coefficients, newest first; updated in place as symbols come.
        powers = np.ones(max(self.orders), np.uint64)  # M^0, M^1, ... (mod 2^64)
        for j in range(1, len(powers)):
            powers[j : j + 1] = powers[j - 1 : j] * _MULT
        k = np.array(self.orders)
        self.oldest = k - 1  # where in `history` each order's oldest symbol is
        self.power = powers[k - 1]  # M^(k-1)
        self.hashes = np.tile(np.cumsum(powers)[k - 1], (segments, 1))  # (B, K): the empty history
        self.tags = k.astype(np.uint64) << np.uint64(56)  # so that orders never share a row
        self.rows: dict[int, int] = {}  # context hash -> row of `counts`
        self.counts = np.zeros((1024, symbols), np.uint16)
        models = len(self.orders) + 2  # the orders, the LSTM and a uniform bias
        self.weights = np.full((len(self.orders) + 1, models), START_WEIGHT)
        self._pending = None

    def mix(self, lstm_log_p: np.ndarray, real: np.ndarray | None = None) -> np.ndarray:
        """The mixed distribution of each segment's next symbol, (B, V) float64, from
        the LSTM's log-probabilities (B, V) (of every row, `real` or not)."""
        rows = self._context_rows()  # (B, K)
        c = self.counts[rows].astype(np.float64)  # (B, K, V)
        total = c.sum(axis=2, keepdims=True)
        logs = np.concatenate([
            np.log((c + ALPHA) / (total + ALPHA * self.V)),
            lstm_log_p[:, None, :],
            np.full((self.B, 1, self.V), -np.log(self.V)),
        ], axis=1)  # (B, K + 2, V)
        chosen = (total[:, :, 0] > 0).sum(axis=1)  # the weight set: how many contexts were seen
        z = np.einsum("bm,bmv->bv", self.weights[chosen], logs)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        self._pending = rows, logs, chosen, p
        return p

    def update(self, codes: np.ndarray, real: np.ndarray) -> None:
        """Learn from the symbols `codes` (B,) just coded where `real` (the segments
        that still had data), after `mix` gave their distribution."""
        rows, logs, chosen, p = self._pending
        b = np.flatnonzero(real)
        x = codes[b]
        # d(-log p(x)) / d(w_m) = E_p[log p_m] - log p_m(x)
        grad = np.einsum("bv,bmv->bm", p[b], logs[b]) - logs[b, :, x]
        np.add.at(self.weights, chosen[b], -RATE * grad)
        hit = rows[b]  # (n, K)
        cells = hit.ravel(), np.repeat(x, len(self.orders))
        np.add.at(self.counts, cells, 1)
        self.counts[np.unique(cells[0][self.counts[cells] >= _HALVE_AT])] //= 2
        new = x[:, None].astype(np.uint64) + np.uint64(1)
        oldest = self.history[b][:, self.oldest] + np.uint64(1)
        self.hashes[b] = new + _MULT * (self.hashes[b] - oldest * self.power)
        self.history[b] = np.concatenate([new - np.uint64(1), self.history[b, :-1]], axis=1)

    def _context_rows(self) -> np.ndarray:
        """The counts' row of each segment's context of each order, (B, K), new rows made."""
        keys = (self.hashes ^ self.tags).ravel().tolist()
        rows = list(map(self.rows.get, keys))
        if None in rows:  # contexts seen for the first time get the next rows
            for i in [i for i, row in enumerate(rows) if row is None]:
                rows[i] = self.rows.setdefault(keys[i], len(self.rows))
        if len(self.rows) > len(self.counts):
            grown = np.zeros((2 * len(self.rows), self.V), np.uint16)
            grown[: len(self.counts)] = self.counts
            self.counts = grown
        return np.array(rows).reshape(self.B, len(self.orders))

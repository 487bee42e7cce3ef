"""Interpolated Kneser-Ney n-gram models of characters: the baseline a character
LSTM has to beat to show it learned more than the last few letters.

A text is any sequence of codes; it is handled as a Python string of one
character per code, so that counting n-grams is counting substrings.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np


def as_string(codes: np.ndarray) -> str:
    return "".join(map(chr, np.asarray(codes).tolist()))


class KneserNey:
    """P(w | the `order` - 1 codes before it), interpolated Kneser-Ney with one
    absolute discount; below the unigram, uniform over `vocab_size` codes, so
    no code has probability 0."""

    def __init__(self, codes: np.ndarray, order: int, vocab_size: int, discount: float = 0.75):
        if order < 1:
            raise ValueError("order must be at least 1")
        self.order, self.vocab_size, self.discount = order, vocab_size, discount
        text = as_string(codes)
        # counts[k]: n-grams of length k; the top order counts occurrences, the lower
        # orders count distinct left extensions (continuation counts).
        top = Counter(text[i : i + order] for i in range(len(text) - order + 1))
        self.counts = {order: top}
        for k in range(order - 1, 0, -1):
            self.counts[k] = Counter(gram[1:] for gram in self.counts[k + 1])
        self.totals, self.types = {}, {}
        for k, counts in self.counts.items():
            totals, types = Counter(), Counter()
            for gram, c in counts.items():
                totals[gram[:-1]] += c
                types[gram[:-1]] += 1
            self.totals[k], self.types[k] = totals, types

    def probability(self, context: str, w: str) -> float:
        """P(w | context), context the codes before w (only the last order - 1 count)."""
        p = 1.0 / self.vocab_size
        for k in range(1, self.order + 1):
            ctx = context[len(context) - (k - 1) :] if k > 1 else ""
            if k > 1 and len(ctx) < k - 1:
                break
            total = self.totals[k].get(ctx, 0)
            if total:
                c = self.counts[k].get(ctx + w, 0)
                p = (max(c - self.discount, 0.0) + self.discount * self.types[k][ctx] * p) / total
        return p

    def bits(self, codes: np.ndarray) -> np.ndarray:
        """Bits for each code after the first, given the codes before it in `codes`."""
        text = as_string(codes)
        n = self.order - 1
        return np.array([-math.log2(self.probability(text[max(0, i - n) : i], text[i]))
                         for i in range(1, len(text))])

"""How much guessing a secret takes, roughly: for tokens a person chose.

A generated token (`secrets.token_urlsafe(32)`) has 256 bits; what a person types may have
far fewer while still being long: one letter repeated, a word repeated, a run of the
alphabet. `estimated_bits` counts the bits a guesser would need at most, assuming the
characters are drawn from the token's own distribution (Shannon), and counting a
repeated stretch or a regular run (`abcd`, `1234`, `aaaa`) as the one choice it is. It is
an upper bound for patterns it knows and no proof of strength: a long phrase of common
words passes it. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections import Counter

__all__ = ["MIN_TOKEN_BITS", "estimated_bits"]

# A token the web chat may be exposed with. The weakest random token allowed, 32 hex
# characters (128 bits), is estimated at 88-130 bits; a repeated word or a run of the
# keyboard at well under 50.
MIN_TOKEN_BITS = 64


def estimated_bits(secret: str) -> float:
    """About how many bits of entropy `secret` holds (see the module docstring)."""
    if not secret:
        return 0.0
    counts = Counter(secret)
    per_character = -sum(n / len(secret) * math.log2(n / len(secret)) for n in counts.values())
    return per_character * _effective_length(secret)


def _effective_length(secret: str) -> int:
    """The characters that were free choices: a character that repeats a trigram seen
    before, or that continues a regular step from the two before it, is not."""
    seen: set[str] = set()
    free = min(len(secret), 2)
    for i in range(2, len(secret)):
        trigram = secret[i - 2 : i + 1]
        step = ord(secret[i]) - ord(secret[i - 1])
        regular = step == ord(secret[i - 1]) - ord(secret[i - 2]) and abs(step) <= 1
        if trigram not in seen and not regular:
            free += 1
        seen.add(trigram)
    return free

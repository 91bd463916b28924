"""Scores are stored exact; shown with one decimal, halves rounded up (56.25 → 56.3, not Python's 56.2)."""

from decimal import ROUND_HALF_UP, Decimal


def display(value: float | None) -> float | None:
    if value is None:
        return None
    # repr() is the shortest text that round-trips: 56.25 stays 56.25 rather than its binary expansion.
    return float(Decimal(repr(float(value))).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))

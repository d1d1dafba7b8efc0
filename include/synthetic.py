"""Synthetic retail stores: reproducible transaction data for the main job, tests and benchmarks.

Each store draws baskets from a shared catalog with its own item popularity (a Zipf law over a
store-specific permutation, so stores are not identically distributed) and with planted bundles
(item sets bought together, e.g. wine + cheese) at store-specific rates. Quantities are small
integers, unit utilities are prices with two decimals (exact ``Decimal``), dates are spread over
a window. The output is the project's transaction file formats (docs/ingest.md).

Randomness is ``random.Random(seed)``: this is test data, not privacy noise.
"""
from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

_BASE_ITEMS = [
    "red wine", "white wine", "cheddar", "brie", "baguette", "olive oil", "pasta", "tomato sauce",
    "parmesan", "coffee beans", "milk", "butter", "eggs", "flour", "sugar", "chocolate", "strawberries",
    "cream", "beer", "crisps", "salsa", "tortilla chips", "lemons", "gin", "tonic water", "salmon",
    "rice", "soy sauce", "nori", "avocado", "limes", "coriander", "chicken", "potatoes", "carrots",
    "onions", "garlic", "apples", "bananas", "yoghurt", "granola", "honey", "tea", "biscuits", "orange juice",
    "cereal", "bread", "ham", "mustard", "pickles", "sparkling water", "steak", "peppercorn sauce",
    "ice cream", "cones", "nappies", "baby wipes", "dog food", "cat litter", "detergent",
]
# bundles planted in every store (at store-specific rates): the patterns a round should find
PLANTED_BUNDLES: tuple[tuple[str, ...], ...] = (
    ("red wine", "brie", "baguette"),
    ("gin", "tonic water", "lemons"),
    ("pasta", "tomato sauce", "parmesan"),
    ("beer", "crisps"),
    ("steak", "peppercorn sauce", "red wine"),
    ("strawberries", "cream"),
    ("salmon", "rice", "soy sauce"),
    ("nappies", "baby wipes", "beer"),
)


@dataclass(frozen=True, slots=True)
class SampleTransaction:
    transaction_id: str
    transaction_date: datetime
    items: tuple[str, ...]
    quantities: tuple[Decimal, ...]
    unit_utilities: tuple[Decimal, ...]


def catalog(n_items: int = 200) -> list[str]:
    """The shared item catalog: the named base items, then numbered variants up to ``n_items``."""
    items = list(_BASE_ITEMS)
    i = 0
    while len(items) < n_items:
        items.append(f"{_BASE_ITEMS[i % len(_BASE_ITEMS)]} #{i // len(_BASE_ITEMS) + 2}")
        i += 1
    return items[:n_items]


def unit_prices(items: list[str], seed: int = 7) -> dict[str, Decimal]:
    """Shelf price per item (Decimal, 2 places), the same in every store."""
    rng = random.Random(seed)
    return {it: Decimal(rng.randint(49, 2999)) / 100 for it in items}


def store_transactions(store_index: int, n_transactions: int, *, n_items: int = 200, seed: int = 2026,
                       start: datetime = datetime(2026, 1, 1, tzinfo=timezone.utc), days: int = 300,
                       mean_basket: float = 4.0, bundle_rate: float = 0.12,
                       prefix: str | None = None) -> list[SampleTransaction]:
    """Transactions of one synthetic store; the same arguments give the same data."""
    rng = random.Random(seed * 1_000_003 + store_index)
    items = catalog(n_items)
    prices = unit_prices(items)
    order = items[:]
    rng.shuffle(order)                       # store-specific popularity ranking
    weights = [1.0 / (rank + 1) ** 1.1 for rank in range(len(order))]
    bundle_weights = [rng.uniform(0.3, 1.7) for _ in PLANTED_BUNDLES]
    prefix = prefix or f"S{store_index:03d}"
    out = []
    for n in range(n_transactions):
        size = max(1, min(len(order), int(rng.expovariate(1.0 / mean_basket)) + 1))
        basket = set(rng.choices(order, weights=weights, k=size))
        if rng.random() < bundle_rate:
            basket.update(rng.choices(PLANTED_BUNDLES, weights=bundle_weights, k=1)[0])
        names = tuple(sorted(basket))
        qty = tuple(Decimal(rng.choice((1, 1, 1, 2, 2, 3, 4, 6))) for _ in names)
        when = start + timedelta(seconds=rng.randrange(days * 86400))
        out.append(SampleTransaction(f"{prefix}-T{n:07d}", when, names, qty, tuple(prices[i] for i in names)))
    return out


def to_csv(transactions: list[SampleTransaction]) -> bytes:
    """The CSV transaction file format: one line per item, header row, RFC 4180 quoting."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["transaction_id", "transaction_date", "item", "quantity", "unit_utility"])
    for t in transactions:
        when = t.transaction_date.isoformat()
        for item, q, u in zip(t.items, t.quantities, t.unit_utilities):
            w.writerow([t.transaction_id, when, item, str(q), str(u)])
    return buf.getvalue().encode("utf-8")


def to_json_lines(transactions: list[SampleTransaction]) -> bytes:
    """The JSON Lines transaction file format: one transaction object per line."""
    lines = []
    for t in transactions:
        # numbers are written from their Decimal text (exact), not through binary floats
        lines.append(
            '{"transaction_id": %s, "transaction_date": %s, "items": %s, "quantities": [%s], "unit_utilities": [%s]}'
            % (json.dumps(t.transaction_id), json.dumps(t.transaction_date.isoformat()),
               json.dumps(list(t.items), ensure_ascii=False), ", ".join(str(q) for q in t.quantities),
               ", ".join(str(u) for u in t.unit_utilities)))
    return ("\n".join(lines) + "\n").encode("utf-8")

"""The planogram: which products the cabinet sells, at what price, and which shelf holds how many.

Loaded from a TOML file (config/planogram.toml is the example) or from JSON (the backend's
set_planogram command), validated with one clear line per problem, and kept as frozen values. Stock
counts change with every sale; the store keeps the live copy (see Store.save_planogram).
Money is integer fen; weights are grams.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

_SKU = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

# A shelf's change in weight is explained by searching the combinations of its products, so every
# product on a shelf can be confused with some mix of the others: past a couple of dozen the search
# outgrows what the cabinet can do between the door closing and the receipt, and the answers turn
# ambiguous anyway. Real shelves hold a handful of products (docs/checkout.md).
MAX_PRODUCTS_PER_SHELF = 24


class PlanogramError(ValueError):
    pass


@dataclass(frozen=True)
class Product:
    sku: str
    name_zh: str
    name_bo: str
    name_en: str
    price_fen: int
    unit_grams: float
    tolerance_grams: float
    perishable: bool = False


@dataclass(frozen=True)
class Planogram:
    products: dict[str, Product]
    shelves: dict[int, dict[str, int]]  # shelf id -> {sku: stock count}
    version: str = ""
    source: str = field(default="", compare=False)

    def shelf_products(self, shelf: int) -> list[Product]:
        return [self.products[sku] for sku in self.shelves.get(shelf, {})]

    def with_stock(self, shelf: int, changes: dict[str, int]) -> "Planogram":
        """A copy with `changes` (sku -> signed count change) applied to one shelf."""
        shelves = {n: dict(stock) for n, stock in self.shelves.items()}
        for sku, change in changes.items():
            shelves[shelf][sku] = max(0, shelves[shelf].get(sku, 0) + change)
        return replace(self, shelves=shelves)

    def to_json(self) -> str:
        return json.dumps({"version": self.version,
                           "products": [asdict(p) for p in self.products.values()],
                           "shelves": [{"id": n, "stock": stock}
                                       for n, stock in sorted(self.shelves.items())]},
                          ensure_ascii=False, sort_keys=True)


def from_dict(data: Any, source: str = "<planogram>", shelf_ids: set[int] | None = None
              ) -> Planogram:
    """Validate a planogram given as plain data (from TOML or JSON)."""
    def fail(where: str, value: Any, rule: str):
        raise PlanogramError(f"{source}: {where} = {value!r}: {rule}")

    if not isinstance(data, dict):
        fail("planogram", data, "must be a table")
    unknown = set(data) - {"version", "product", "products", "shelf", "shelves"}
    if unknown:
        key = sorted(unknown)[0]
        fail(key, data[key], "unknown key; known: version, product, shelf")
    version = data.get("version", "")
    if not isinstance(version, str):
        fail("version", version, "must be a string")
    raw_products = data.get("product", data.get("products"))
    if not isinstance(raw_products, list) or not raw_products:
        fail("product", raw_products, "must be a non-empty array of tables ([[product]])")
    products: dict[str, Product] = {}
    fields = {"sku": str, "name_zh": str, "name_bo": str, "name_en": str, "price_fen": int,
              "unit_grams": (int, float), "tolerance_grams": (int, float), "perishable": bool}
    for i, item in enumerate(raw_products):
        where = f"product[{i}]"
        if not isinstance(item, dict):
            fail(where, item, "must be a table")
        for key in item:
            if key not in fields:
                fail(f"{where}.{key}", item[key], "unknown key; known: " + ", ".join(fields))
        for key, kind in fields.items():
            if key == "perishable" and key not in item:
                continue
            if key not in item:
                fail(f"{where}.{key}", None, "is required")
            value = item[key]
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                fail(f"{where}.{key}", value, f"must be {_kind_name(kind)}")
        if not _SKU.fullmatch(item["sku"]):
            fail(f"{where}.sku", item["sku"], "must be 1-64 letters, digits, '.', '_' or '-'")
        if item["sku"] in products:
            fail(f"{where}.sku", item["sku"], "duplicate sku")
        for name in ("name_zh", "name_bo", "name_en"):
            if not item[name].strip():
                fail(f"{where}.{name}", item[name], "must not be empty")
        if not 0 <= item["price_fen"] <= 10_000_000:
            fail(f"{where}.price_fen", item["price_fen"], "must be 0 to 10000000 fen")
        if not 1 <= item["unit_grams"] <= 50_000:
            fail(f"{where}.unit_grams", item["unit_grams"], "must be 1 to 50000 g")
        if not 0 <= item["tolerance_grams"] < item["unit_grams"] / 2:
            fail(f"{where}.tolerance_grams", item["tolerance_grams"],
                 "must be 0 or more and less than half of unit_grams")
        products[item["sku"]] = Product(**{**item, "unit_grams": float(item["unit_grams"]),
                                           "tolerance_grams": float(item["tolerance_grams"])})
    raw_shelves = data.get("shelf", data.get("shelves"))
    if not isinstance(raw_shelves, list) or not raw_shelves:
        fail("shelf", raw_shelves, "must be a non-empty array of tables ([[shelf]])")
    shelves: dict[int, dict[str, int]] = {}
    placed: dict[str, int] = {}
    for i, item in enumerate(raw_shelves):
        where = f"shelf[{i}]"
        if not isinstance(item, dict) or set(item) - {"id", "stock"}:
            fail(where, item, "must be a table with 'id' and 'stock' only")
        shelf_id, stock = item.get("id"), item.get("stock")
        if not isinstance(shelf_id, int) or isinstance(shelf_id, bool) or shelf_id < 1:
            fail(f"{where}.id", shelf_id, "must be a shelf number (1 or more)")
        if shelf_id in shelves:
            fail(f"{where}.id", shelf_id, "duplicate shelf")
        if shelf_ids is not None and shelf_id not in shelf_ids:
            fail(f"{where}.id", shelf_id, f"no such shelf in the config; shelves are "
                 f"{sorted(shelf_ids)}")
        if not isinstance(stock, dict):
            fail(f"{where}.stock", stock, "must be a table of sku = count")
        for sku, count in stock.items():
            if sku not in products:
                fail(f"{where}.stock.{sku}", count, "no such product")
            if sku in placed:
                fail(f"{where}.stock.{sku}", count, f"already on shelf {placed[sku]}; a product "
                     "lives on one shelf")
            if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 1000:
                fail(f"{where}.stock.{sku}", count, "must be a count from 0 to 1000")
            placed[sku] = shelf_id
        if len(stock) > MAX_PRODUCTS_PER_SHELF:
            fail(f"{where}.stock", f"{len(stock)} products", f"at most {MAX_PRODUCTS_PER_SHELF} "
                 "products on one shelf: the weighing tells them apart by searching their "
                 "combinations; put the rest on another shelf")
        shelves[shelf_id] = dict(stock)
    return Planogram(products=products, shelves=shelves, version=version, source=source)


def _kind_name(kind) -> str:
    if kind is bool:
        return "true or false"
    if kind is int:
        return "an integer"
    if kind is str:
        return "a string"
    return "a number"


def load(path: str | Path, shelf_ids: set[int] | None = None) -> Planogram:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanogramError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanogramError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PlanogramError(f"{path}: not valid TOML: {exc}") from None
    return from_dict(data, str(path), shelf_ids)


def from_json(text: str, source: str = "<json>", shelf_ids: set[int] | None = None) -> Planogram:
    try:
        data = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, or an integer too long to read
        raise PlanogramError(f"{source}: not valid JSON: {exc}") from None
    except RecursionError:
        raise PlanogramError(f"{source}: not valid JSON: nested too deep") from None
    return from_dict(data, source, shelf_ids)

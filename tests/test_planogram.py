"""The planogram file: the example loads, bad entries are refused with one line, JSON round-trips."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cabinet.planogram import MAX_PRODUCTS_PER_SHELF, PlanogramError, from_dict, from_json, load

from .conftest import REPO

EXAMPLE = REPO / "config" / "planogram.toml"


def _product(**kw):
    base = {"sku": "a", "name_zh": "甲", "name_bo": "ཀ", "name_en": "A", "price_fen": 100,
            "unit_grams": 100.0, "tolerance_grams": 3.0}
    return {**base, **kw}


def test_example_loads_and_round_trips_through_json():
    planogram = load(EXAMPLE, shelf_ids={1, 2, 3, 4})
    assert planogram.shelves[1] == {"water-550ml": 12, "yak-milk-250ml": 10}
    assert planogram.products["yak-milk-250ml"].perishable
    assert planogram.products["tea-500ml"].name_bo
    assert from_json(planogram.to_json()) == planogram


@pytest.mark.parametrize("data, words", [
    ({"product": [_product(price_fen=-1)], "shelf": [{"id": 1, "stock": {"a": 1}}]}, "price_fen"),
    ({"product": [_product(price_fen=1.5)], "shelf": [{"id": 1, "stock": {}}]}, "an integer"),
    ({"product": [_product(tolerance_grams=60)], "shelf": [{"id": 1, "stock": {}}]}, "half"),
    ({"product": [_product(), _product()], "shelf": [{"id": 1, "stock": {}}]}, "duplicate sku"),
    ({"product": [_product(name_bo=" ")], "shelf": [{"id": 1, "stock": {}}]}, "must not be empty"),
    ({"product": [_product(colour="red")], "shelf": [{"id": 1, "stock": {}}]}, "unknown key"),
    ({"product": [_product()], "shelf": [{"id": 1, "stock": {"b": 1}}]}, "no such product"),
    ({"product": [_product()], "shelf": [{"id": 1, "stock": {"a": 1}}, {"id": 2, "stock": {"a": 1}}]},
     "already on shelf 1"),
    ({"product": [_product()], "shelf": [{"id": 9, "stock": {"a": 1}}]}, "no such shelf"),
    ({"product": [_product()], "shelf": [{"id": 1, "stock": {"a": -2}}]}, "count"),
    ({"product": [], "shelf": []}, "non-empty"),
    ({"product": [_product(sku="bad sku")], "shelf": [{"id": 1, "stock": {}}]}, "letters"),
])
def test_bad_planograms_are_refused_with_one_line(data, words):
    with pytest.raises(PlanogramError) as caught:
        from_dict(data, "p.toml", shelf_ids={1, 2, 3, 4})
    assert words in str(caught.value) and str(caught.value).startswith("p.toml: ")
    assert "\n" not in str(caught.value)


def test_bad_files(tmp_path):
    with pytest.raises(PlanogramError, match="no such file"):
        load(tmp_path / "none.toml")
    (tmp_path / "bad.toml").write_text("[[product]\n")
    with pytest.raises(PlanogramError, match="not valid TOML"):
        load(tmp_path / "bad.toml")
    with pytest.raises(PlanogramError, match="not valid JSON"):
        from_json("{")


def test_with_stock_is_a_new_value():
    planogram = load(EXAMPLE)
    after = planogram.with_stock(1, {"water-550ml": -2})
    assert after.shelves[1]["water-550ml"] == 10 and planogram.shelves[1]["water-550ml"] == 12


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
                        st.sampled_from(["product", "shelf", "sku", "id", "stock", "price_fen"]),
                        kids, max_size=4), max_leaves=20))
def test_any_data_loads_or_is_refused_cleanly(data):
    try:
        from_dict(data)
    except PlanogramError:
        pass


def test_a_shelf_of_products_the_weighing_cannot_tell_apart_is_refused():
    """Issue 15 #1, as reported: the example planogram plus ~1 000 products on shelf 1 (stock 0)
    was accepted and bricked the cabinet at the next sale. Refused now, with the reason."""
    data = tomllib.loads((REPO / "config" / "planogram.toml").read_text())
    for i in range(1000):
        data["product"].append({"sku": f"extra-{i}", "name_zh": "额外", "name_bo": "ཀ",
                                "name_en": "Extra", "price_fen": 100, "unit_grams": 1000 + i,
                                "tolerance_grams": 1})
        data["shelf"][0]["stock"][f"extra-{i}"] = 0
    with pytest.raises(PlanogramError) as refused:
        from_dict(data)
    assert "shelf[0].stock" in str(refused.value)
    assert f"at most {MAX_PRODUCTS_PER_SHELF} products on one shelf" in str(refused.value)
    data["shelf"][0]["stock"] = dict(list(data["shelf"][0]["stock"].items())[:24])
    assert len(from_dict(data).shelves[1]) == 24   # the limit itself is allowed

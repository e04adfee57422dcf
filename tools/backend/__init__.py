"""The reference backend: what cabinets sync with and operators steer them through (see README)."""

"""Offline assets (weights and data from registry packages) and the datasets built on them."""

from headwise.assets.registry import ASSETS, Asset, asset_dir, cache_dir, fetch, is_present, require

__all__ = ["ASSETS", "Asset", "asset_dir", "cache_dir", "fetch", "is_present", "require"]

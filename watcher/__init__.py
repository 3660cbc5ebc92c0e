"""Margin Watcher: a read-only daemon that warns before DeFi positions are liquidated."""

__version__ = "0.1.0"

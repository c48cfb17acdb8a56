"""Optional dependencies: one clear error naming the extra to install."""

from __future__ import annotations

import importlib


class MissingExtra(ImportError):
    pass


def require(module: str, extra: str):
    """Import `module`, or explain which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"this needs the '{module}' package: pip install 'robolake[{extra}]'") from None

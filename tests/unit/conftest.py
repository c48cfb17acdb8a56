"""Unit tests run on the embedded default whatever the shell says: `make test` exports the test
stack's ROBOLAKE_* settings for the integration tests, and no unit test may reach a service."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="module", autouse=True)
def embedded_default():
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("ROBOLAKE_")]:
            patch.delenv(name)
        yield

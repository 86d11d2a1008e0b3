"""Every reliability test runs torch on one thread (the suite shares two cores)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield

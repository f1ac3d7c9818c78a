from __future__ import annotations

import os
import shutil

import pytest

HOW_TO_INSTALL = "no Chromium: install Debian's chromium package (apt-get install chromium) or set CHROMIUM to its path"


@pytest.fixture
def chromium() -> str:
    """The browser's path; without one the test is skipped, saying how to install it, or fails where
    REQUIRE_BROWSER is set (.ci/run sets it: CI must never skip)."""
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("REQUIRE_BROWSER"):
            pytest.fail(HOW_TO_INSTALL)
        pytest.skip(HOW_TO_INSTALL)
    return path

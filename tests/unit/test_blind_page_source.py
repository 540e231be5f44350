"""The download page's source: the JavaScript phones from 2018 run (ES2017 syntax: iOS 12 Safari, Chrome 64
and later), nothing that loads from elsewhere or stores anything, and the hash docs/security.md publishes."""

from __future__ import annotations

import re

import esprima
import pytest

from relay.page import CONTENT_SECURITY_POLICY, PAGE, PAGE_SHA256
from tests.conftest import REPO

SCRIPT = re.search(rb"<script>(.*?)</script>", PAGE, re.S).group(1).decode()  # type: ignore[union-attr]


def test_the_script_is_es2017() -> None:
    """esprima parses ES2017 and nothing newer: optional chaining, ``??``, class fields… fail here."""
    esprima.parseScript(SCRIPT)
    with pytest.raises(esprima.Error):
        esprima.parseScript("var a = b?.c;")


def test_nothing_loads_from_elsewhere_and_nothing_is_stored() -> None:
    text = PAGE.decode()
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:)?//", text)
    assert not re.search(r"https?://", SCRIPT)
    for stored in ("document.cookie", "localStorage", "sessionStorage", "indexedDB", "serviceWorker"):
        assert stored not in text
    assert text.count("<script") == 1 and "<link" not in text and "<img" not in text
    assert len(PAGE) < 24 * 1024
    assert "connect-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe" not in CONTENT_SECURITY_POLICY


def test_docs_publish_this_pages_hash() -> None:
    """docs/security.md names the SHA-256 of the page this release serves (change both together)."""
    assert PAGE_SHA256 in (REPO / "docs" / "security.md").read_text()

"""The language of the device's web pages: ``Accept-Language`` parsing (RFC 9110 §12.5.4), and every string
those pages show translated in the five languages."""

from __future__ import annotations

import ast

import pytest

from appliance.web.download import PAGE_TEXTS
from appliance.web.page_lang import accepted_languages
from appliance.web.screen_claim import AGAIN
from eticket_core.i18n import translator
from tests.conftest import REPO


@pytest.mark.parametrize(("header", "ranges"), [
    ("de-CH,fr;q=0.8,*;q=0.1", ["de-CH", "fr", "*"]),
    ("fr;q=0.5, it;q=0.9, en", ["en", "it", "fr"]),  # by weight, not by place
    ("es, de", ["es", "de"]),  # equal weights keep the header's order
    ("en;q=0, it", ["it"]),  # q=0: not acceptable
    ("en;q=abc, it;q=2, de", ["de"]),  # malformed or out-of-range weights are dropped
    ("", []),
    (" , ;q=1", []),
    ("en_US,de_CH;q=0.5", ["en-US", "de-CH"]),  # POSIX locale names, as some clients send
])
def test_accept_language_ranges_come_most_preferred_first(header: str, ranges: list[str]) -> None:
    assert accepted_languages(header) == ranges


def _web_page_strings() -> set[str]:
    """Every literal passed to t(...) in appliance/web/*.py, the receipt pages' texts and the claim pages' hint."""
    strings = {text for pair in PAGE_TEXTS.values() for text in pair} | {AGAIN}
    for path in (REPO / "appliance" / "web").glob("*.py"):
        tree = ast.parse(path.read_text())
        strings |= {node.args[0].value for node in ast.walk(tree)
                    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "t"
                    and node.args and isinstance(node.args[0], ast.Constant)}
    return strings


@pytest.mark.parametrize("lang", ["fr", "it", "de", "es"])
def test_every_web_page_string_is_translated(lang: str) -> None:
    strings = _web_page_strings()
    assert len(strings) >= 25
    t = translator(lang)
    assert sorted(s for s in strings if t(s) == s) == []

"""The screen speaks fr, it, en, de and es: every string the scenes draw is translated, catalogues are current."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import pytest

from eticket_core.i18n import LOCALE_DIR, translator
from tests.conftest import REPO


def _scene_strings() -> set[str]:
    """Every literal passed to t(...) in kiosk/scenes.py and kiosk/bands.py."""
    trees = [ast.parse((REPO / "kiosk" / name).read_text()) for name in ("scenes.py", "bands.py")]
    return {node.args[0].value for tree in trees for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "t"
            and node.args and isinstance(node.args[0], ast.Constant)}


@pytest.mark.parametrize("lang", ["fr", "it", "de", "es"])
def test_every_screen_string_is_translated(lang: str) -> None:
    t = translator(lang)
    strings = _scene_strings()
    assert len(strings) >= 15
    untranslated = sorted(s for s in strings if t(s) == s)
    assert untranslated == []


def test_committed_catalogues_are_current() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("translations", REPO / "scripts" / "translations.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    for lang, (po, mo) in module.catalogues().items():
        folder = LOCALE_DIR / lang / "LC_MESSAGES"
        assert (folder / "eticket.po").read_bytes() == po, f"run scripts/translations.py ({lang})"
        assert (folder / "eticket.mo").read_bytes() == mo
    assert set(module.MESSAGES) >= _scene_strings()
    _ = io


def test_unknown_language_falls_back_to_english() -> None:
    assert translator("xx")("Scan to get") == "Scan to get"
    assert translator("fr")("Scan to get") == "Scannez pour obtenir"
    _ = Path

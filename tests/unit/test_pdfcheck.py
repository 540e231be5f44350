"""Every real receipt is accepted; every broken one is refused with the fault named."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance import errors
from appliance.pdfcheck import check_pdf
from tests.conftest import samples

EXPECTED_REFUSAL = {
    "mustang_corrupt-waytoosmall.pdf": errors.UnreadablePdf,
    "mustang_corruptedV2PDF.pdf": errors.PdfWithoutUsablePage,
    "pypdf_issue-297-javascript.pdf": errors.PdfWithJavaScript,
    "pypdf_r6-both-passwords-aes256.pdf": errors.PasswordProtectedPdf,
    "qpdf_empty-zero-pages.pdf": errors.PdfWithoutPages,
}


@pytest.mark.parametrize("pdf", samples("pdf"), ids=lambda p: p.name)
def test_real_receipts_are_accepted(pdf: Path) -> None:
    """Every PDF a real POS or ERP produced opens, owner-password-only encryption included."""
    info = check_pdf(pdf.read_bytes())
    assert info.pages >= 1


@pytest.mark.parametrize("pdf", samples("pdf-bad"), ids=lambda p: p.name)
def test_broken_receipts_are_refused_with_the_fault_named(pdf: Path) -> None:
    """Each broken sample gets its own, specific refusal (not a generic error)."""
    assert pdf.name in EXPECTED_REFUSAL, f"new bad sample {pdf.name}: say which fault it must get"
    with pytest.raises(errors.RejectedPdf) as caught:
        check_pdf(pdf.read_bytes())
    assert type(caught.value) is EXPECTED_REFUSAL[pdf.name]


def test_every_bad_sample_is_covered() -> None:
    assert {p.name for p in samples("pdf-bad")} == set(EXPECTED_REFUSAL)


@pytest.mark.parametrize(
    "body, fault",
    [
        (b"GIF89a\x01\x00", errors.NotAPdf),
        (b"<html>%PDF-1.4</html>" + b" " * 2000, errors.UnreadablePdf),
        (b"%PDF-1.7\n" + b"\x00" * 5000, errors.UnreadablePdf),
        (b" " * 1100 + b"%PDF-1.4", errors.NotAPdf),
    ],
    ids=["gif", "html-with-header", "header-then-zeros", "header-too-late"],
)
def test_things_that_are_not_receipts(body: bytes, fault: type[Exception]) -> None:
    with pytest.raises(fault):
        check_pdf(body)


def test_javascript_hidden_in_an_annotation_is_found(tmp_path: Path) -> None:
    """JavaScript is refused wherever it sits, not only in /OpenAction."""
    import pikepdf

    good = samples("pdf")[0].read_bytes()
    with pikepdf.open(__import__("io").BytesIO(good)) as pdf:
        action = pdf.make_indirect(pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS=pikepdf.String("app.alert(1)")))
        annot = pdf.make_indirect(pikepdf.Dictionary(Type=pikepdf.Name.Annot, Subtype=pikepdf.Name.Link,
                                                      Rect=[0, 0, 10, 10], A=action))
        pdf.pages[0].Annots = pdf.make_indirect(pikepdf.Array([annot]))
        out = tmp_path / "js.pdf"
        pdf.save(out, object_stream_mode=pikepdf.ObjectStreamMode.generate)
    with pytest.raises(errors.PdfWithJavaScript):
        check_pdf(out.read_bytes())


def _with(tmp_path: Path, edit: object) -> bytes:
    """A real sample receipt, edited by ``edit(pdf)`` and saved (object streams on, to hide things well)."""
    import io

    import pikepdf

    with pikepdf.open(io.BytesIO(samples("pdf")[0].read_bytes())) as pdf:
        edit(pdf)  # type: ignore[operator]
        out = io.BytesIO()
        pdf.save(out, object_stream_mode=pikepdf.ObjectStreamMode.generate)
    return out.getvalue()


def _js() -> object:
    import pikepdf

    return pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS=pikepdf.String("app.alert(1)"))


def _set_open_action(pdf: object) -> None:
    pdf.Root.OpenAction = _js()  # type: ignore[attr-defined]


def _set_page_aa(pdf: object) -> None:
    import pikepdf

    pdf.pages[0].AA = pikepdf.Dictionary(O=_js())  # type: ignore[attr-defined]


def _set_next_chain(pdf: object) -> None:
    import pikepdf

    pdf.Root.OpenAction = pikepdf.Dictionary(  # type: ignore[attr-defined]
        S=pikepdf.Name.URI, URI=pikepdf.String("https://example.invalid"), Next=pikepdf.Array([_js()]))


def _set_xfa(pdf: object) -> None:
    import pikepdf

    pdf.Root.AcroForm = pikepdf.Dictionary(Fields=pikepdf.Array(), XFA=pikepdf.String("<xdp/>"))  # type: ignore[attr-defined]


def _set_launch(pdf: object) -> None:
    import pikepdf

    pdf.Root.OpenAction = pikepdf.Dictionary(S=pikepdf.Name.Launch, F=pikepdf.String("cmd.exe"))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "edit, fault",
    [(_set_open_action, errors.PdfWithJavaScript), (_set_page_aa, errors.PdfWithJavaScript),
     (_set_next_chain, errors.PdfWithJavaScript), (_set_xfa, errors.PdfWithJavaScript),
     (_set_launch, errors.PdfWithLaunchAction)],
    ids=["direct-open-action", "direct-page-aa", "next-chain", "xfa", "launch"],
)
def test_active_content_written_inline_is_found(tmp_path: Path, edit: object, fault: type[Exception]) -> None:
    """Actions written as direct (inline) dictionaries, nested anywhere, are found too."""
    with pytest.raises(fault):
        check_pdf(_with(tmp_path, edit))


def _page_bomb(count: int) -> bytes:
    """One page referenced ``count`` times from a single /Kids array: a few KB claiming many pages."""
    import io

    import pikepdf

    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(200, 300))
    page = pdf.Root.Pages.Kids[0]
    pdf.Root.Pages.Kids = pikepdf.Array([page] * count)
    pdf.Root.Pages.Count = count
    out = io.BytesIO()
    pdf.save(out, object_stream_mode=pikepdf.ObjectStreamMode.generate, compress_streams=True)
    return out.getvalue()


def test_a_page_bomb_is_refused_before_it_is_expanded() -> None:
    body = _page_bomb(100_000)
    assert len(body) < 100_000
    with pytest.raises(errors.PdfTooComplex):
        check_pdf(body)
    assert check_pdf(_page_bomb(3)).pages == 3


def test_a_page_tree_that_loops_is_unreadable() -> None:
    import io

    import pikepdf

    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(200, 300))
    pages = pdf.Root.Pages
    pages.Kids.append(pages)  # the tree contains itself
    pages.Count = 2
    out = io.BytesIO()
    pdf.save(out)
    with pytest.raises((errors.UnreadablePdf, errors.PdfTooComplex)):
        check_pdf(out.getvalue())


def _one_page(media_box: list[float], raw: bytes = b"", written: bytes = b"") -> bytes:
    """A one-page PDF whose MediaBox is ``media_box``; ``raw`` replaces ``written`` in the saved bytes (a
    number as some producer writes it, not as pikepdf does)."""
    import io

    import pikepdf

    pdf = pikepdf.new()
    pdf.add_blank_page(page_size=(200, 300))
    pdf.pages[0].MediaBox = pikepdf.Array(media_box)
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue().replace(written, raw) if written else out.getvalue()


HUGE_INTEGER = b"1000000000000000019884624838656"
"""1e30 as pikepdf writes it: an integer beyond 64 bits, which qpdf cannot parse."""


@pytest.mark.parametrize(
    "body",
    [_one_page([0, 0, 1e30, 1e30]),
     _one_page([0, 0, 1e30, 1e30], raw=b"100000000000000000000000000000.0", written=HUGE_INTEGER),
     _one_page([0, 0, 20_000, 300])],
    ids=["integer-1e30", "real-1e29", "20000pt"],
)
def test_a_page_size_out_of_range_is_named(body: bytes) -> None:
    """This is a POS bug that writes a MediaBox of 1e30: the refusal says the page size is out of range (it
    said "The PDF has no pages", which the vendor could not act on)."""
    with pytest.raises(errors.PdfWithoutUsablePage) as caught:
        check_pdf(body)
    assert caught.value.slug == "pdf-no-usable-page"
    assert "page size out of range" in str(caught.value) or "page size is out of range" in str(caught.value)


def test_the_largest_page_is_accepted() -> None:
    """14,400 pt is the largest page of ISO 32000-1 Annex C.2: accepted (a 5-metre till roll fits)."""
    assert check_pdf(_one_page([0, 0, 226, 14_400])).first_page_pt == (226.0, 14_400.0)

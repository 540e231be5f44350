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

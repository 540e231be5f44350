"""ESC/POS: the print jobs tills send to receipt printers, read into a receipt model and made into PDFs."""

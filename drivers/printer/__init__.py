"""Receipt printers (ESC/POS through python-escpos): checkout, return and
account receipts with the card number masked, and paper-out and offline
reported to the caller.

Layer: `drivers`. Imports the standard library, python-escpos and pyserial;
never `ils`, the server or the kiosk.
"""

from drivers.printer.printer import (
    PaperOutError,
    PrinterConfigError,
    PrinterError,
    PrinterOfflineError,
    PrinterStatus,
    ReceiptPrinter,
)
from drivers.printer.receipt import (
    ReceiptData,
    ReceiptItem,
    ReceiptLabels,
    mask_card_number,
    render_account_slip,
    render_checkout,
    render_return,
)

__all__ = [
    "PaperOutError",
    "PrinterConfigError",
    "PrinterError",
    "PrinterOfflineError",
    "PrinterStatus",
    "ReceiptData",
    "ReceiptItem",
    "ReceiptLabels",
    "ReceiptPrinter",
    "mask_card_number",
    "render_account_slip",
    "render_checkout",
    "render_return",
]

"""Device drivers: barcode scanners, RFID readers and tag data, receipt printers
and the security gate.

Layer: beside the kiosk. Drivers may use `sip2server.protocol` and the SIP2
client, never `ils`. Nothing lives here yet; the drivers issue builds them.
"""

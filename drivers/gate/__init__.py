"""The RFID security gate: `ils gate` polls a reader, alarms on secured items,
asks the SIP2 server what the item is, and counts passes and alarms.

Layer: `drivers`. May use `sip2server.protocol`, `sip2server.client` and the
other drivers; never `ils` or `kiosk`. The gate keeps no patron data.
"""

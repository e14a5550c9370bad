"""RFID: ISO 28560 tag data, reader protocols (Feig ISO host, 3M 810) and a reader
simulator.

Layer: `drivers`. Imports the standard library, pyserial and `drivers.events`.
Never imports `ils` or `kiosk`.
"""

"""Barcode scanners: USB keyboard-wedge (python-evdev) and serial, and the
site's normalisation pipeline that turns a scan into a patron or item barcode.

Layer: `drivers`. Imports the standard library, python-evdev, pyserial,
Twisted and `drivers.events`/`drivers.stream`; never `ils`, the server or the
kiosk.
"""

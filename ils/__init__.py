"""The circulation core: catalogue, patrons, loan rules, loans and the database.

Layer: the bottom one. It must not import `sip2server`, `kiosk` or `drivers`; it
knows nothing of SIP2, Twisted or Kivy. Services return results and raise domain
refusals; they never log.
"""

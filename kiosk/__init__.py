"""The Kivy self-check kiosk: screens, view models, the offline journal.

Layer: the top. It talks to the server over SIP2 only (through
`sip2server.protocol` and the SIP2 client) and never opens the database, so it
must not import `ils`. Nothing lives here yet; the kiosk issue builds it.
"""

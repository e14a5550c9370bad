"""Everything SIP2: the codec, the Twisted server, session rules and the mapping
from SIP2 messages to the circulation core.

Layer: above `ils`. It must not import `kiosk` or `drivers`.
"""

"""The answers to SIP2 requests, one module per message group.

Layer: `sip2server`. Each module turns one group of requests into calls on the
circulation core (`ils`) and the results into responses; `sip2server.mapping`
dispatches to them and applies the account's output policy. Nothing here
imports Twisted or does I/O of its own: every function runs in a worker thread
and is synchronous.
"""

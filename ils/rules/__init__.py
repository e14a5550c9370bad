"""Loan rules as data: the matrix, the rules file and the `ils rules` commands.

Layer: `ils`. `matrix` imports only `ils.models` and `ils.calendar`; `rulesfile`
only pydantic and the standard library; `store` and `commands` add SQLAlchemy,
click and the rest of the core. Nothing here imports SIP2, Twisted or Kivy, and
nothing here logs: the commands print to their own output.
"""

"""Transports: wire protocols in, ``Call`` and friends out (gRPC now, an HTTP facade later).

A transport validates and converts wire messages, hands domain objects to the ``App``, and
maps ``SkinflintError`` to its own status codes. It holds no state of its own.
"""

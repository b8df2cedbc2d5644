"""The ``voice-agent`` command line and the Python client of the ``/ws/voice`` protocol.

It composes the gateway and every worker, so it sits above them, not in ``shared/``.
"""

"""The conformance server's scenario families, one module each (see ``../server.py``)."""

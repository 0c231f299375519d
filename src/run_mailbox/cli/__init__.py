"""The ``mailbox`` command line (an entry point: it drives the public API, nothing imports it)."""

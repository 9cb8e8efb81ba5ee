"""Backends shipped with the core: the in-memory engine (`aclbus.backends.memory`)."""

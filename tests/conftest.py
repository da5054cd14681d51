"""The dasi test plugin (shared.testing.plugin, loaded from pyproject) provides the servers and fixtures."""

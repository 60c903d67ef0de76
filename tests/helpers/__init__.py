"""Builders the tests share: fixture files in the datasets' release and hub formats (data, hub), tiny models built
from config (models), sweeps run as a user runs them and read back (sweeps), and local multi-node Ray clusters
(cluster). Fixtures that use them live in tests/conftest.py and tests/unit/conftest.py."""

"""Shared pytest set-up.

Testing charter: network traffic only on loopback or inside namespaces a test
creates (and always removes); timing by virtual clocks in the core tests and by
generous ``fail_after`` bounds around real processes; no test asserts speed.
"""

pytest_plugins = ["failoverd.lab.pytest_plugin"]

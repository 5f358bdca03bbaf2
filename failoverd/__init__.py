"""failoverd: IP failover for Linux, after the Mac OS X Server IP failover family."""

__version__ = "0.1.0"

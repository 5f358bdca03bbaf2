"""Offline analysis of recorded heartbeats: the native trace format, packet
capture import, and replay of the backup's detector under a virtual clock."""

"""The sans-IO core: pure state machines that take events with a time ``now``
and return actions. Nothing in this package reads a clock, a socket or a file.
"""

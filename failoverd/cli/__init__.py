"""Command-line plumbing shared by the programs: options into validated
configurations, host checks before start, logging, the background and the
pid file, exit codes."""

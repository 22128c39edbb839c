"""One module per ``taghead`` subcommand (see :mod:`taghead.cli`)."""

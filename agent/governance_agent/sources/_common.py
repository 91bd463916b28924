"""What every source shares."""


class SourceError(Exception):
    """A source could not read the system; the message says what failed (and the agent reports the
    source's last good value meanwhile, never an empty one)."""

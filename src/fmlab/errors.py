"""User-facing errors.

Every mistake a user can make (a missing file, a wrong key, a bad value) raises a subclass of
:class:`FmlabError` whose message names the file, key or value at fault. The CLI prints the message
on one line and exits with status 2; library users can catch ``FmlabError``.
"""


class FmlabError(Exception):
    """Base class of every error caused by user input."""


class DataError(FmlabError):
    """A data source is missing, malformed or inconsistent."""


class ConfigError(FmlabError):
    """A configuration key or value is wrong."""


class ModelError(FmlabError):
    """A backbone name or weights file cannot be used."""

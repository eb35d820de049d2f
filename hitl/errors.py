"""Errors an operator can act on: the CLI prints their message as one line and exits non-zero.

Anything else that escapes is a bug and keeps its traceback.
"""


class HitlError(Exception):
    """Base of every expected, user-facing failure."""


class ConfigError(HitlError, ValueError):
    """A setting, mapping or policy file is wrong."""


class UnknownMappingError(ConfigError):
    """No column mapping has the requested name."""


class TrainingDataError(HitlError, ValueError):
    """The labelled tickets cannot train a model (too few labels or tickets, no words)."""


class SourceError(HitlError):
    """An input (file, folder, HTTP API) cannot be read at all."""


class DatabaseError(HitlError):
    """The application database cannot be reached or migrated."""

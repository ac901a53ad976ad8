"""Errors that carry a message meant for the user, not a traceback."""


class HeadwiseError(Exception):
    """An error caused by the user's input; the CLI prints its message and exits with status 2."""


class UnsupportedModelError(HeadwiseError, TypeError):
    """The model's family has no head layout in headwise."""


class AssetMissingError(HeadwiseError, FileNotFoundError):
    """An offline asset is not in the cache and cannot be fetched."""

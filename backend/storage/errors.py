"""What the storage layer refuses, each mapped to one HTTP status by backend/app.py."""


class NotFound(Exception):
    """No such cabinet, command or user (404)."""


class Forbidden(Exception):
    """A credential that is not good for this (403)."""


class Conflict(Exception):
    """The thing exists already (409)."""


class TooLarge(Exception):
    """A command larger than any cabinet will take (413)."""


class LoginRefused(Exception):
    """A wrong password, a disabled account (401), or too many tries (429, retry_after)."""

    def __init__(self, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after

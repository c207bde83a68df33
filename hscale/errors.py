"""The error every layer raises for bad input: one line, exit code 2, before anything starts."""


class UsageError(ValueError):
    """Bad input from the user: reported in one line, exit code 2, before anything starts."""

"""The one exception type for bad user input: the CLI prints its message as a single line and exits with status 2."""


class UsageError(ValueError):
    """Bad input from the user (an argument, a file, a dataset). The message names the bad value and what is allowed."""

"""The error every tool reports as one line on stderr with exit code 2."""


class InputError(Exception):
    """Bad user input: reported as one line on stderr, exit code 2."""

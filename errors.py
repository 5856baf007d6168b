"""The one exception type that reaches a user as a single line (the CLIs print it and exit 1)."""


class TesseraError(Exception):
    """An error in the user's input: message is one line naming the file, field, tensor or op."""

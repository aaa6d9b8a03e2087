"""Export errors: one clear line for the user, no traceback unless --debug."""


class ExportError(Exception):
    """The model cannot be exported as asked; the message says which layer/op and what to do."""

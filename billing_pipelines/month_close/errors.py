"""The one error of the month close: what cannot run as asked, and what to run first."""


class MonthCloseError(RuntimeError):
    """A month that cannot be closed as asked; the message says what to run first."""

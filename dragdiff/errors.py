"""The one exception type users see."""


class DragError(ValueError):
    """A problem the user can fix: bad input, an unknown or unavailable model, a bad session.

    The message names what is wrong and says how to fix it; nothing has been written when it is raised.
    """


class DragCancelled(Exception):
    """Raised between steps when the caller's `should_stop()` returned True; nothing is left half-done."""

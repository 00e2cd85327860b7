"""User-facing errors.

Every mistake a user can make (bad recipe, missing file, bad data, broken custom
layer) is raised as a :class:`BabysitError` subclass carrying one clear message.
The CLI turns it into that message on stderr and exit code 2; nothing else should
ever reach the user as a traceback.
"""


class BabysitError(Exception):
    """Base class: a problem in the user's input, reported as one message, exit 2."""

    exit_code = 2


class RecipeError(BabysitError):
    """A recipe that cannot be read or validated (file, line and key in the message)."""


class DataError(BabysitError):
    """A data source that is missing, malformed, or unusable for the model."""


class ModelError(BabysitError):
    """A model that cannot be built: unknown layer, bad shape, broken custom layer."""


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM caught by one of babysit's own handlers: exit 130.

    A KeyboardInterrupt, so everything that stops cleanly on Ctrl-C stops on it
    too; a subclass, so that the code fencing a user's layer can tell a real
    interrupt from a ``raise KeyboardInterrupt`` written in the user's module.
    """

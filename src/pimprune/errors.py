"""One exception hierarchy for user errors.

Every error a user can cause (a wrong geometry string, a missing file, an
unknown name, an out-of-range number) raises a subclass of
:class:`PimpruneError` whose message is one line that says what is wrong and
how to fix it. The command line prints that line and exits with status 2; any
other exception is a bug.
"""


class PimpruneError(Exception):
    """Base class of every error caused by user input."""

    exit_code: int = 2


class ConfigError(PimpruneError):
    """An argument or configuration value is invalid (name, range, format)."""


class GeometryError(ConfigError):
    """A crossbar geometry is not of the form ``RxC`` with positive integers."""


class UnknownNameError(ConfigError):
    """A name (model, pattern, dataset, preset) is not registered."""


class DataError(PimpruneError):
    """A dataset is missing, empty, truncated or corrupt."""


class CheckpointError(PimpruneError):
    """A checkpoint is missing, corrupt, unsafe or from another architecture."""


class OutputError(PimpruneError):
    """An output location cannot be written."""


class TrainingError(PimpruneError):
    """Training diverged (NaN/inf loss) or cannot continue."""

"""One exception hierarchy. The CLI turns these into ``Error: ...`` on stderr and exit code 1."""

from __future__ import annotations


class HardstatError(Exception):
    """Base class: a user-facing problem with a one-line message that says what to do.

    ``reported_elsewhere`` is set on the copies that other training processes raise under
    torchrun, so the message is printed once, by the process where it arose.
    """

    reported_elsewhere: bool = False
    exit_code: int = 1
    """The CLI's exit status for this error (1; 130 for an interruption)."""

    def reworded(self, message: str) -> HardstatError:
        """The same kind of error with another message (e.g. naming the run it came from),
        still printed only where it arose."""
        error = type(self)(message)
        error.reported_elsewhere = self.reported_elsewhere
        return error


class ConfigError(HardstatError):
    """A configuration value (band spec, batch/queue sizes, preset...) is invalid."""


class DatasetError(HardstatError):
    """A dataset is missing, unreadable or malformed."""


class LogError(HardstatError):
    """A run's logs are missing, corrupt or of another schema version."""


class CheckpointError(HardstatError):
    """A checkpoint is missing, corrupt, untrusted or does not match the run."""


class RunError(HardstatError):
    """A run directory is missing, already exists, or is not a hardstat run."""


class QueryError(HardstatError):
    """An SQL query failed (syntax, unknown column, or a statement that would write)."""


class WordNetError(HardstatError):
    """The WordNet corpus is missing, fails its check, or lacks a class's synset."""


class RecordError(HardstatError, ValueError):
    """Bad input to the recorder (:mod:`hardstat.record`): a shape, dtype, id range or step order.

    The message starts with the name of the argument at fault. Also a ``ValueError``, so code
    that already catches those keeps working.
    """


class CorruptLogError(LogError):
    """A log file is damaged (truncated, unreadable pages, wrong types or nulls): every reader,
    the report included, stops on it rather than showing a partial result."""


class WriteError(HardstatError):
    """A file could not be written (disk full, permission denied, read-only file system); the
    previous version of the file is kept."""


class RunInUseError(RunError):
    """Another process holds the run's (or sweep's) lock."""


class Interrupted(HardstatError):
    """Stopped by Ctrl-C (SIGINT); the CLI exits with code 130."""

    exit_code = 130

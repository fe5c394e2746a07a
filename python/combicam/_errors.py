"""The exceptions of combicam. Each message is the command line's one line: the problem and
the fix. Every class is a `combicam.Error` and also a built-in exception, so that a plain
`except ValueError` catches a bad photo too."""


class Error(Exception):
    """Anything combicam refuses or fails at."""


class InputError(Error, ValueError):
    """A bad argument: an unknown method, block, target or score, or an array of the wrong
    shape, dtype or values."""


class ImageError(Error, ValueError):
    """A photo that cannot be read or decoded."""


class ImageNotFoundError(ImageError, FileNotFoundError):
    """A photo path that does not exist."""


class WeightsError(Error, ValueError):
    """Weights that are missing, truncated or do not match the model."""


class GpuError(Error, RuntimeError):
    """No usable GPU adapter, or the adapter refused what was asked."""


class OutputError(Error, OSError):
    """A file that could not be written."""

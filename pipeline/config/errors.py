"""The one error a configuration raises: it names the field, and the commands exit 2 on it."""


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the field."""

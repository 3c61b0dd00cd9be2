"""The one exception family nomac raises for bad input.

Every message names the thing (file, layer, field, port), the offending value and
the rule it broke, so the CLI can print it as one line and exit non-zero.
"""


class NomacError(Exception):
    """Base of every error nomac reports to a user (as opposed to a bug)."""


class ConfigError(NomacError):
    """A config file, layer, array or hardware option breaks a rule of docs/spec.md (sections 4-13)."""

    def __init__(self, where: str, field: str, value, rule: str):
        self.where, self.field, self.value, self.rule = where, field, value, rule
        shown = repr(value)
        if len(shown) > 80 and not isinstance(value, str):   # long arrays, not file names
            shown = shown[:77] + "..."
        super().__init__(f"{where}: {field} = {shown}: {rule}")

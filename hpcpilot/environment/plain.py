"""The pilot's own environment: payloads run as they are (``environment.chain = plain``)."""

from __future__ import annotations

from hpcpilot.environment.base import Environment, EnvironmentRequest
from hpcpilot.model.command import Command


class PlainEnvironment(Environment):
    """No modules, no container: ``wrap`` returns the command unchanged."""

    def wrap(self, command: Command, request: EnvironmentRequest) -> Command:
        """``command`` itself."""
        return command

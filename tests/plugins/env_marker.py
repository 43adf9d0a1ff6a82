"""A test environment plugin: wraps payloads in ``env HPCPILOT_TEST_WRAPPED=<image>``."""

from __future__ import annotations

from collections.abc import Mapping

from hpcpilot.environment.base import Environment, EnvironmentRequest
from hpcpilot.model.command import Command
from hpcpilot.model.errors import EnvironmentSetupError


class MarkerEnvironment(Environment):
    """Puts ``env HPCPILOT_TEST_WRAPPED=<image or 'none'>`` in front of the payload."""

    def prepare(self, request: EnvironmentRequest, base_env: Mapping[str, str]) -> None:
        if request.image == "missing.sif":
            raise EnvironmentSetupError("container image missing.sif does not exist")

    def wrap(self, command: Command, request: EnvironmentRequest) -> Command:
        return command.with_argv(("env", f"HPCPILOT_TEST_WRAPPED={request.image or 'none'}", *command.argv))

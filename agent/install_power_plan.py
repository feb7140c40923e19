"""``wattwise agent install --power-plan``: the power-plan applier's unit beside the agent's.

The applier (``wattwise agent apply-power-plan``) changes GPU power limits as root, so
nothing installs it unless asked: :func:`wattwise.agent.install.plan_install` adds these
steps only when given a :class:`PowerPlanUnit`, which only ``--power-plan`` creates.
They follow the agent's: a skeleton of the unit's environment file and an empty token
file (without either the unit does not start), the unit with the program in
``ExecStart=`` rewritten to the installed wattwise, and ``systemctl enable``, with
``--now`` only once the optimizer's URL and the token are filled in. The state
directory needs no step: it is the unit's ``StateDirectory=``, which systemd creates.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wattwise.agent.install import (
    InstallStep,
    WriteFile,
    _credential_steps,
    _directory_step,
    _enable_step,
    _under,
    _unit_steps,
    credential_paths,
    render_unit,
    shipped_unit_path,
)
from wattwise.errors import ConfigError, InstallError
from wattwise.settings import check_http_url

UNIT_NAME = "wattwise-power-plan.service"
URL_VARIABLE = "WATTWISE_OPTIMIZER_URL"
COMMAND = "agent apply-power-plan"
"""What the unit's ExecStart= runs after the program; the installer keeps it as shipped."""

ENVIRONMENT_SKELETON = f"""\
# wattwise power-plan applier (wattwise-power-plan.service): the unit reads this file
# with EnvironmentFile=. `wattwise agent install --power-plan` writes it once and
# never overwrites it. docs/power-budgets.md has the rules and the steps.
# After editing: `systemctl restart wattwise-power-plan`.

# Required: the optimizer's API, http:// or https:// without user:password@ in it.
# The token (read scope) goes in /etc/wattwise/power-plan-token, not here.
{URL_VARIABLE}=

# More options of `wattwise agent apply-power-plan`, split into words; unset, none.
# WATTWISE_POWER_PLAN_ARGS=--interval-s 60 --ca-file /etc/wattwise/optimizer-ca.pem
"""


@dataclass(frozen=True)
class PowerPlanUnit:
    """The power-plan applier's unit to install: passing one in is the opt-in."""

    source: Path
    """The unit file as shipped, its ExecStart= naming /opt/wattwise/bin/wattwise."""

    name: str = UNIT_NAME

    @classmethod
    def shipped(cls) -> PowerPlanUnit:
        return cls(shipped_unit_path(UNIT_NAME))

    def plan(
        self, exec_start: Sequence[str], *, root: Path, systemd_dir: Path, made: set[Path]
    ) -> list[InstallStep]:
        """The steps that would install the unit, its environment file and token file."""
        unit_text = render_power_plan_unit(self.source.read_text(), exec_start)
        environment, token = environment_file(unit_text), token_file(unit_text)
        why = "empty API token for LoadCredential= (a missing file stops the unit); fill it in"
        return [
            *_environment_steps(_under(root, environment), made),
            *_credential_steps(root, [token], made, why),
            *_unit_steps(_under(root, systemd_dir / self.name), unit_text, self.name, made),
            _enable_step(
                start=_ready(_under(root, environment), _under(root, token)),
                unit=self.name,
                what="the power-plan applier",
            ),
        ]

    def next_steps(self, *, started: bool) -> str:
        """What the operator does next, printed after the install."""
        if started:
            return f"The power-plan applier is running: systemctl status {self.name}"
        unit_text = self.source.read_text()
        token = token_file(unit_text)
        return (
            f"The power-plan applier is enabled, not started. Set {URL_VARIABLE} in "
            f"{environment_file(unit_text)}, put an API token with the read scope in {token}, "
            f"try one pass (wattwise agent apply-power-plan --optimizer-url URL --token-file "
            f"{token} --once --dry-run), then: systemctl start {self.name}"
        )


def render_power_plan_unit(unit_text: str, exec_start: Sequence[str]) -> str:
    """The unit with the program of its ExecStart= replaced by ``exec_start``.

    Unlike the agent's, the arguments are kept as shipped: they use systemd's ``%d``
    and ``${WATTWISE_OPTIMIZER_URL}``, which quoting would make literal.
    """
    found = re.findall(r"^ExecStart=\S+ (.*)$", unit_text, re.MULTILINE)
    if len(found) != 1 or not found[0].startswith(f"{COMMAND} "):
        raise InstallError(f"the power-plan unit must have one ExecStart= running `{COMMAND}`")
    return render_unit(unit_text, exec_start, found[0])


def environment_file(unit_text: str) -> Path:
    """The file the unit's one ``EnvironmentFile=`` names (required: no ``-`` prefix)."""
    found = re.findall(r"^EnvironmentFile=(\S+)\s*$", unit_text, re.MULTILINE)
    if len(found) != 1 or found[0].startswith("-"):
        raise InstallError("the power-plan unit must have one required EnvironmentFile=")
    return Path(found[0])


def token_file(unit_text: str) -> Path:
    """The API token's file, the one the unit's ``LoadCredential=`` loads."""
    paths = credential_paths(unit_text)
    if len(paths) != 1:
        raise InstallError(f"the power-plan unit must load one credential, found {len(paths)}")
    return paths[0]


def _environment_steps(target: Path, made: set[Path]) -> list[InstallStep]:
    if target.exists():
        return []  # never overwrite an operator's settings
    steps = _directory_step(target.parent, made, "holds the agent's configuration")
    why = f"the applier's settings; set {URL_VARIABLE}, then start it"
    # Root's alone, like the service that reads it; nothing in it is for other users.
    steps.append(WriteFile(target, ENVIRONMENT_SKELETON, 0o600, why))
    return steps


def _ready(environment: Path, token: Path) -> bool:
    """Whether the applier would start: the skeleton has no URL, a fresh token file is empty."""
    try:
        url = _read_environment(environment).get(URL_VARIABLE, "")
        check_http_url(URL_VARIABLE, url, password_key=str(token))
        return token.read_text().strip() != ""
    except (OSError, ConfigError):
        return False


def _read_environment(path: Path) -> dict[str, str]:
    """``KEY=value`` lines, as much of systemd's EnvironmentFile= syntax as the skeleton uses."""
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith(("#", ";")):
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[key.strip()] = value
    return values

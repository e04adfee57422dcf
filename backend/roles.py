"""Who may do what: the one table of the operators' permissions, read by backend/deps.py.

    viewer      reads everything an operator sees (fleet, sales, stock, commands' fates)
    technician  + the service commands: unlock, restock, end a session, clear alarms and the
                  lockout, diagnostics, restart
    operator    + every command (prices, planograms, setpoints, faces, ads), cabinets and
                  enrolments, access codes, the audit log, reviews' adjustments, par levels
    admin       + people: accounts, roles, passwords
"""

from __future__ import annotations

from .protocol import CommandType, Role

SERVICE_COMMANDS = frozenset({
    CommandType.remote_unlock, CommandType.restock_mode, CommandType.end_session,
    CommandType.clear_alarm, CommandType.clear_lockout, CommandType.request_diagnostics,
    CommandType.restart})

# permission -> the roles that have it
PERMISSIONS: dict[str, frozenset[Role]] = {
    "read": frozenset(Role),
    "service_commands": frozenset({Role.technician, Role.operator, Role.admin}),
    "commands": frozenset({Role.operator, Role.admin}),
    "fleet": frozenset({Role.operator, Role.admin}),       # cabinets, enrolments, codes, faces
    "adjust": frozenset({Role.operator, Role.admin}),      # resolve reviews, par levels
    "audit": frozenset({Role.operator, Role.admin}),
    "people": frozenset({Role.admin}),
}


def may(role: Role | str, permission: str) -> bool:
    return Role(role) in PERMISSIONS[permission]


def may_issue(role: Role | str, command: CommandType) -> bool:
    if may(role, "commands"):
        return True
    return command in SERVICE_COMMANDS and may(role, "service_commands")

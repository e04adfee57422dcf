"""One router per resource: the cabinets' sync, the fleet, commands, access codes, people."""

"""cabinetd: the controller daemon of an unattended smart vending cabinet."""

__version__ = "0.1.0"

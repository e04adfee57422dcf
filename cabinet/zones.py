"""The cabinet's temperature zones on the controller thread: one ClimateControl per zone, and what
the rest of the cabinet asks of them together.

Readings reach their zone by the thermometer's device name, door openings by the zone that holds
the door. A food-safety lockout is a zone's: it holds shut only the doors of that zone with
perishables on their shelves, and marks only those perishables unavailable; an ambient zone beside
it goes on selling. A one-zone cabinet is the same with one entry, and its names are unchanged.
"""

from __future__ import annotations

from typing import Any

from .climate_control import ClimateControl
from .config import thermometer_device
from .planogram import Planogram
from .ports import Ports


class Zones:
    def __init__(self, ports: Ports, outputs: dict[int, tuple[Any, Any]]):
        """`outputs`: zone id -> (compressor, heater) it drives."""
        config = ports.config
        zones = config.zone_list()
        self.several = len(zones) > 1
        self.controls = {z.id: ClimateControl(ports, compressor=outputs[z.id][0],
                                              heater=outputs[z.id][1], zone=z,
                                              several=self.several)
                         for z in zones}
        self.first = self.controls[zones[0].id]
        self.devices = {thermometer_device(z.id, self.several): z.id for z in zones}
        self._zone_of_door = {door: z.id for z in zones for door in z.doors}
        self._shelves_of_door = {d.id: d.shelves for d in config.door_list()}
        self.temperatures: dict[int, dict[str, Any] | None] = {z.id: None for z in zones}

    # --- inputs -----------------------------------------------------------------------------------
    def on_reading(self, device: str, celsius: float, sensor: str, at: float) -> None:
        zone = self.devices.get(device)
        if zone is None:
            raise ValueError(f"a reading from {device!r}, which is no zone's thermometer")
        self.temperatures[zone] = {"celsius": round(celsius, 3), "sensor": sensor,
                                   "age_seconds": 0.0, "_at": at}
        self.controls[zone].on_reading(celsius)

    def on_sensor_fault(self, device: str) -> None:
        zone = self.devices.get(device)
        if zone is not None:
            self.controls[zone].on_sensor_fault()

    def on_door(self, door: int, is_open: bool) -> None:
        zone = self._zone_of_door.get(door)
        if zone is not None:
            self.controls[zone].on_door(is_open)

    def on_restock(self) -> None:
        for control in self.controls.values():
            control.on_restock()

    # --- questions --------------------------------------------------------------------------------
    def zone(self, zone: int | None) -> ClimateControl:
        """The zone a technician or the backend named (None: the only one)."""
        if zone is None:
            if self.several:
                raise ValueError(f"this cabinet has zones {sorted(self.controls)}: name one")
            return self.first
        if zone not in self.controls:
            raise ValueError(f"no zone {zone}: this cabinet has zones {sorted(self.controls)}")
        return self.controls[zone]

    @property
    def locked_out(self) -> bool:
        return any(c.locked_out for c in self.controls.values())

    def locked_shelves(self) -> frozenset[int]:
        """The shelves behind a locked-out zone's doors: their perishables are not sold."""
        return frozenset(shelf for c in self.controls.values() if c.locked_out
                         for door in c.zone.doors for shelf in self._shelves_of_door[door])

    def held_doors(self, planogram: Planogram | None) -> set[int]:
        """The doors a shopper's session leaves locked: a locked-out zone's doors with
        perishables in stock behind them."""
        if planogram is None:
            return set()
        held = set()
        for control in self.controls.values():
            if not control.locked_out:
                continue
            for door in control.zone.doors:
                if any(n > 0 and planogram.products[sku].perishable
                       for shelf in self._shelves_of_door[door]
                       for sku, n in planogram.shelves.get(shelf, {}).items()):
                    held.add(door)
        return held

    def unchilled_perishables(self, planogram: Planogram) -> list[str]:
        """Perishables a planogram stocks behind a zone with no cold-chain rule ("shelf N:
        sku"): nothing would lock them out, so such a planogram is refused."""
        ambient = {shelf for c in self.controls.values()
                   if c.zone.climate.food_safety != "perishables"
                   for door in c.zone.doors for shelf in self._shelves_of_door[door]}
        return [f"shelf {shelf}: {sku}" for shelf, stock in sorted(planogram.shelves.items())
                if shelf in ambient for sku, n in stock.items()
                if n > 0 and planogram.products[sku].perishable]

    def temperature(self, zone: int, now: float) -> dict[str, Any] | None:
        reading = self.temperatures[zone]
        if reading is None:
            return None
        out = {k: v for k, v in reading.items() if not k.startswith("_")}
        out["age_seconds"] = round(now - reading["_at"], 1)
        return out

    def views(self, now: float) -> list[dict[str, Any]]:
        """Each zone for /api/state: its reading, relays, setpoint, mode and food safety."""
        out = []
        for zone_id, control in self.controls.items():
            z = control.zone
            out.append({"zone": zone_id, "name": z.label, "doors": list(z.doors),
                        "food_safety_rule": z.climate.food_safety,
                        "temperature": self.temperature(zone_id, now),
                        "relays": {"compressor": None if z.compressor is None
                                   else control.compressor.energised,
                                   "heater": None if z.heater is None
                                   else control.heater.energised},
                        "climate": control.snapshot()})
        return out

"""Config: the documented file matches the embedded defaults; bad input stops with one clear line."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cabinet.config import Config, ConfigError, load, parse, read_secret

from .conftest import REPO


def test_documented_default_file_equals_embedded_defaults():
    assert load(REPO / "config" / "cabinet.toml") == Config()


def test_documented_file_sets_every_key_with_a_comment():
    text = (REPO / "config" / "cabinet.toml").read_text()
    for section in dataclasses.fields(Config):
        if section.name == "source":
            continue
        assert f"[{section.name}]" in text, section.name
        for key in dataclasses.fields(getattr(Config(), section.name)):
            if key.metadata.get("item"):  # an array of tables
                assert f"[[{section.name}.{key.name}]]" in text
            else:
                assert f"\n{key.name} = " in text, f"{section.name}.{key.name} undocumented"


def test_simulation_config_is_valid():
    config = load(REPO / "config" / "simulation.toml")
    assert config.simulation.ambient_celsius == -15.0
    assert config.shelves.poll_interval_seconds == 0.5


@pytest.mark.parametrize("text, key, words", [
    ("[lock]\npin = 99", "lock.pin = 99", "0 to 27"),
    ("[door]\npinn = 3", "door.pinn = 3", "unknown key"),
    ("[nonsense]\na = 1", "nonsense", "unknown key"),
    ("[checkout]\nunlock_timeout_seconds = 400", "checkout.unlock_timeout_seconds = 400.0",
     "between 3 and 120"),
    ("[checkout]\nunlock_timeout_seconds = '15'", "checkout.unlock_timeout_seconds = '15'",
     "must be a number"),
    ("[lock]\nactive_high = 1", "lock.active_high = 1", "true or false"),
    ("[rs485]\nbaudrate = 9601", "rs485.baudrate = 9601", "one of"),
    ("[rs485]\nport = 'ttyUSB0'", "rs485.port = 'ttyUSB0'", "absolute path"),
    ("[shelves]\nstable_readings = 1.5", "shelves.stable_readings = 1.5", "integer"),
    ("[shelves]\nfresh_readings = 5", "shelves.fresh_readings = 5", "must not exceed"),
    ("[[shelves.shelf]]\nid = 1\ndevice_id = 300", "shelves.shelf[0].device_id = 300", "between"),
    ("[[shelves.shelf]]\nid = 1\ndevice_id = 1\n[[shelves.shelf]]\nid = 2\ndevice_id = 1",
     "shelves.shelf[1].device_id = 1", "already used"),
    ("[heater]\npin = 17", "heater.pin = 17", "already used by lock.pin"),
    ("[lock]\npin = 4", "lock.pin = 4", "pulled down at boot"),
    ("[lock]\npin = 17\nactive_high = false", "lock.pin = 17", "pulled up at boot"),
    ("[checkout]\ndoor_open_warning_seconds = 90", "checkout.door_open_alarm_seconds = 60",
     "greater than"),
    ("[sync]\nbackend_url = 'ftp://x'", "sync.backend_url = 'ftp://x'", "http"),
    ("[cabinet]\nid = 'bad id!'", "cabinet.id = 'bad id!'", "letters"),
    ("[shelves]\nshelf = 3", "shelves.shelf = 3", "array of tables"),
    ("lock = 3", "lock = 3", "must be a table"),
])
def test_bad_value_names_file_key_value_and_rule(text, key, words):
    with pytest.raises(ConfigError) as caught:
        parse(text, "/etc/cabinet/cabinet.toml")
    message = str(caught.value)
    assert message.startswith("/etc/cabinet/cabinet.toml: ")
    assert key in message and words in message
    assert "\n" not in message


def test_bad_toml_is_reported_with_the_file():
    with pytest.raises(ConfigError, match=r"^f\.toml: not valid TOML"):
        parse("[lock\npin=1", "f.toml")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load(tmp_path / "absent.toml")


def test_partial_file_keeps_other_defaults():
    config = parse("[compressor]\nactive_high = false\n")
    assert config.compressor.pin == 22 and config.compressor.active_high is False
    assert config.lock == Config().lock


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_either_loads_or_raises_config_error(text):
    try:
        parse(text)
    except ConfigError as exc:
        assert "\n" not in str(exc)


def _cabinetd(*args, cwd):
    return subprocess.run([sys.executable, "-m", "cabinet", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=60)


def test_cabinetd_exits_non_zero_with_one_line_naming_the_key(tmp_path):
    bad = tmp_path / "cabinet.toml"
    bad.write_text((REPO / "config" / "cabinet.toml").read_text()
                   .replace("unlock_timeout_seconds = 15.0", "unlock_timeout_seconds = -1"))
    result = _cabinetd("--config", str(bad), "--simulate", "--data-dir", str(tmp_path / "d"),
                       cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "checkout.unlock_timeout_seconds = -1.0" in lines[0] and str(bad) in lines[0]
    assert not (tmp_path / "d").exists()  # refused before touching anything


def test_check_config(tmp_path):
    ok = _cabinetd("--check-config", "--config", str(REPO / "config" / "cabinet.toml"), cwd=tmp_path)
    assert ok.returncode == 0 and "OK" in ok.stdout
    bad = tmp_path / "b.toml"
    bad.write_text("[camera]\nwidth = 10\n")
    result = _cabinetd("--check-config", "--config", str(bad), cwd=tmp_path)
    assert result.returncode == 2 and "camera.width = 10" in result.stderr


def test_secret_file_must_be_0600(tmp_path):
    token = tmp_path / "device-token"
    token.write_text("s3cret\n")
    os.chmod(token, 0o644)
    with pytest.raises(ConfigError, match="mode 0644; it must be 0600"):
        read_secret(token, "device token")
    os.chmod(token, 0o600)
    assert read_secret(token, "device token") == "s3cret"
    with pytest.raises(ConfigError, match="missing"):
        read_secret(tmp_path / "nope", "device token")


def test_daemon_refuses_to_start_with_a_world_readable_token(tmp_path):
    token = tmp_path / "token"
    token.write_text("abc")
    os.chmod(token, 0o640)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[sync]\nbackend_url = 'https://backend.example'\ndevice_token_file = '{token}'\n")
    result = _cabinetd("--config", str(cfg), "--simulate", "--data-dir", str(tmp_path / "d"),
                       "--http-port", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "must be 0600" in result.stderr

"""The lab collector's pure parts: rsyslog configuration, PKI, appliance settings."""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509

from gateway.alerts.config import config_path, load_settings
from gateway.lab.collector import (
    ADDRESS,
    NAME,
    PORT,
    CollectorPaths,
    appliance_settings,
    point_appliance,
    prepare,
    rsyslog_config,
    write_pki,
)
from gateway.lab.services import LabPaths


def test_rsyslog_config_has_one_tls_input_and_two_files(tmp_path: Path) -> None:
    paths = CollectorPaths(tmp_path)
    text = rsyslog_config(paths)
    assert f'input(type="imtcp" address="{ADDRESS}" port="{PORT}"' in text
    assert 'streamDriver.mode="1"' in text and 'streamDriver.authMode="x509/certvalid"' in text
    assert str(paths.parsed) in text and str(paths.raw) in text
    assert "imuxsock" not in text and "imklog" not in text  # never the host's own logs
    assert 'authMode="anon"' in rsyslog_config(paths, mutual=False)


def test_pki_chains_and_names_the_collector(tmp_path: Path) -> None:
    paths = CollectorPaths(tmp_path)
    write_pki(paths)
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert NAME in names.get_values_for_type(x509.DNSName)
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == [ADDRESS]
    assert oct(paths.ca_key.stat().st_mode & 0o777) == "0o600"
    context = ssl.create_default_context(cafile=str(paths.ca_cert))
    context.load_cert_chain(str(paths.client_cert), str(paths.client_key))


def test_appliance_settings_point_at_the_collector(tmp_path: Path) -> None:
    lab = LabPaths("t", tmp_path)
    settings = appliance_settings(lab, facility="local4")
    assert (settings["host"], settings["port"], settings["server_name"]) == (ADDRESS, PORT, NAME)
    assert settings["ca"].endswith("collector/ca.crt") and settings["facility"] == "local4"


def test_prepare_keeps_the_pki_so_the_appliance_certificate_stays_valid(tmp_path: Path) -> None:
    lab = LabPaths("t", tmp_path)
    paths = prepare(lab)
    first = paths.client_cert.read_bytes()
    assert paths.config.read_text() == rsyslog_config(paths)
    prepare(lab)  # a second `lab up`
    assert paths.client_cert.read_bytes() == first
    paths.server_key.unlink()  # a broken PKI is made anew
    prepare(lab)
    assert paths.client_cert.read_bytes() != first


def test_point_appliance_writes_the_alerts_config_only_when_there_is_none(tmp_path: Path) -> None:
    lab, state = LabPaths("t", tmp_path), tmp_path / "gw-state"
    assert point_appliance(lab, state)
    config = config_path(state)
    syslog = load_settings(config).syslog
    assert syslog is not None and syslog.host == ADDRESS and syslog.client_cert
    config.write_text("{}\n")  # the operator's own configuration
    assert not point_appliance(lab, state)
    assert config.read_text() == "{}\n"

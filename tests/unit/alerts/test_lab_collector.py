"""The lab collector's pure parts: rsyslog configuration, PKI, appliance settings."""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509

from gateway.lab.collector import (
    ADDRESS,
    NAME,
    PORT,
    CollectorPaths,
    appliance_settings,
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

"""The lab's SOC collector: rsyslog receiving RFC 5425 syslog over TLS in the `plant` host.

A real collector from Debian (`rsyslog` with `rsyslog-gnutls`), not a listener of our own, so
the lab proves that what the appliance sends is what a SOC's syslog server takes.

- It listens on 198.18.20.10:6514 (the plant workstation's address), TLS through GnuTLS, and
  asks for a client certificate (`x509/certvalid`): only holders of a certificate from the
  lab's collector CA may send.
- `write_pki` makes that CA (ECDSA P-256, lab-only, in the lab directory) with a server
  certificate for `collector.plant.test` and 198.18.20.10 and a client certificate for the
  appliance.
- Every message received is written twice under `<lab>/collector/`: `raw.log` (the message
  as it came, one per line) and `messages.jsonl` (rsyslog's own parse: timestamp, hostname,
  app-name, msgid, facility, severity, structured data, msg), which the kernel tests read.
- `appliance_settings` is the `syslog:` section of `<gw-state>/alerts/config.yaml` that makes
  the appliance send there.

`lab up` with a policy starts it before `plantgated` (`prepare` keeps an existing PKI) and,
unless gw's state already has an alerts configuration, points the appliance at it
(`point_appliance`): the watcher's alerts land here. Tests restart it with a fresh PKI
(`start`); `stop` or `lab down` (which ends every process in the lab's namespaces) end it.
The lab policy must let the appliance reach the collector: a `soc-collector` endpoint
(198.18.20.10, zone plant) and a rule `self -> soc-collector` allowing `syslog-tls`
(tcp 6514), as policies/lab.yaml and policies/site.yaml have.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.lab import services, topology
from gateway.lab.services import LabPaths, ServiceSpec

SERVICE = "syslog-collector"
HOST = "plant"
ADDRESS = topology.PLANT_WORKSTATION
PORT = 6514
NAME = "collector.plant.test"
VALIDITY = datetime.timedelta(days=30)


@dataclass(frozen=True)
class CollectorPaths:
    directory: Path

    @classmethod
    def of(cls, lab: LabPaths) -> CollectorPaths:
        return cls(lab.directory / "collector")

    ca_cert = property(lambda self: self.directory / "ca.crt")
    ca_key = property(lambda self: self.directory / "ca.key")
    server_cert = property(lambda self: self.directory / "server.crt")
    server_key = property(lambda self: self.directory / "server.key")
    client_cert = property(lambda self: self.directory / "client.crt")
    client_key = property(lambda self: self.directory / "client.key")
    config = property(lambda self: self.directory / "rsyslog.conf")
    workdir = property(lambda self: self.directory / "work")
    pidfile = property(lambda self: self.directory / "rsyslogd.pid")
    raw = property(lambda self: self.directory / "raw.log")
    parsed = property(lambda self: self.directory / "messages.jsonl")


# ---------------------------------------------------------------- certificates


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _name(common: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PlantGate lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, common),
        ]
    )


def issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common: str,
    names: list[str],
    *,
    server: bool,
    now: datetime.datetime,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A leaf certificate from the CA: server (names as SANs) or client authentication."""
    key = _key()
    alt: list[x509.GeneralName] = []
    for n in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            alt.append(x509.DNSName(n))
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.KeyUsage(True, False, False, False, True, False, False, False, False),
            critical=True,
        )
    )
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def make_ca(
    now: datetime.datetime, common: str = "PlantGate lab collector CA"
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def write_pki(
    paths: CollectorPaths,
    server_names: list[str] | None = None,
    now: datetime.datetime | None = None,
) -> None:
    """A fresh CA, server certificate (collector names) and appliance client certificate."""
    now = now or datetime.datetime.now(datetime.UTC)
    paths.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_key, ca_cert = make_ca(now)
    _write_key(paths.ca_key, ca_key)
    paths.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    names = server_names or [NAME, ADDRESS]
    for common, alt, server, cert_path, key_path in (
        (names[0], names, True, paths.server_cert, paths.server_key),
        ("appliance", [], False, paths.client_cert, paths.client_key),
    ):
        key, cert = issue(ca_key, ca_cert, common, alt, server=server, now=now)
        _write_key(key_path, key)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


# ---------------------------------------------------------------- rsyslog


def rsyslog_config(
    paths: CollectorPaths, address: str = ADDRESS, port: int = PORT, *, mutual: bool = True
) -> str:
    """rsyslog's configuration: one TLS input, two files, nothing from the host's own logs."""
    auth = "x509/certvalid" if mutual else "anon"
    return f"""# written by gateway.lab.collector: the lab's SOC collector (RFC 5425, TLS)
global(
  workDirectory="{paths.workdir}"
  maxMessageSize="64k"
  defaultNetstreamDriver="gtls"
  defaultNetstreamDriverCAFile="{paths.ca_cert}"
  defaultNetstreamDriverCertFile="{paths.server_cert}"
  defaultNetstreamDriverKeyFile="{paths.server_key}"
)
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1"
       streamDriver.authMode="{auth}" maxSessions="64")
input(type="imtcp" address="{address}" port="{port}" ruleset="soc")

template(name="pg_raw" type="string" string="%rawmsg%\\n")
template(name="pg_json" type="list" option.jsonf="on") {{
  property(outname="received" name="timegenerated" dateFormat="rfc3339" format="jsonf")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="peer" name="fromhost-ip" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="facility" name="syslogfacility" format="jsonf" datatype="number")
  property(outname="severity" name="syslogseverity" format="jsonf" datatype="number")
  property(outname="sd" name="structured-data" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}}

ruleset(name="soc") {{
  action(type="omfile" file="{paths.raw}" template="pg_raw")
  action(type="omfile" file="{paths.parsed}" template="pg_json")
}}
"""


def collector_spec(lab: LabPaths, binary: str | None = None) -> ServiceSpec:
    paths = CollectorPaths.of(lab)
    argv = (
        binary or services.find_binary("rsyslogd"),
        "-n",
        "-f",
        str(paths.config),
        "-i",
        str(paths.pidfile),
    )
    return ServiceSpec(
        SERVICE,
        HOST,
        argv,
        description="SOC syslog collector (rsyslog, TLS)",
        ready="tcp",
        target=f"{ADDRESS}:{PORT}",
    )


def prepare(lab: LabPaths) -> CollectorPaths:
    """What `lab up` needs before starting the collector: its PKI (kept when present, so the
    appliance's client certificate stays valid across `lab up` runs) and its configuration."""
    paths = CollectorPaths.of(lab)
    if not all(p.exists() for p in (paths.ca_cert, paths.server_key, paths.client_key)):
        write_pki(paths)
    paths.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths.config.write_text(rsyslog_config(paths))
    return paths


def point_appliance(lab: LabPaths, state: Path) -> bool:
    """Write `<state>/alerts/config.yaml` so the appliance's alerts go to this collector,
    unless the appliance already has an alerts configuration. Returns whether it wrote."""
    from gateway.alerts.config import config_path

    target = config_path(state)
    if target.exists():
        return False
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    target.write_text(json.dumps({"syslog": appliance_settings(lab)}, indent=2) + "\n")
    return True


def start(lab: LabPaths, *, mutual: bool = True) -> CollectorPaths:
    """(Re)start the collector in `plant` with a fresh PKI; wait until it accepts."""
    paths = CollectorPaths.of(lab)
    stop(lab)
    write_pki(paths)
    paths.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths.config.write_text(rsyslog_config(paths, mutual=mutual))
    services.start_service(lab, collector_spec(lab))
    return paths


def restart(lab: LabPaths, *, mutual: bool = True) -> None:
    """Restart rsyslog keeping its PKI and files (a collector going down and back up)."""
    paths = CollectorPaths.of(lab)
    stop(lab)
    paths.config.write_text(rsyslog_config(paths, mutual=mutual))
    services.start_service(lab, collector_spec(lab))


def stop(lab: LabPaths) -> int | None:
    return services.stop_service(lab, SERVICE)


def received(lab: LabPaths) -> list[dict[str, Any]]:
    """What the collector parsed so far, one dict per message (unreadable lines skipped)."""
    out: list[dict[str, Any]] = []
    try:
        text = CollectorPaths.of(lab).parsed.read_text(errors="replace")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict):
            out.append(item)
    return out


def appliance_settings(lab: LabPaths, **extra: Any) -> dict[str, Any]:
    """The `syslog:` section of the appliance's alerts config for this collector."""
    paths = CollectorPaths.of(lab)
    return {
        "host": ADDRESS,
        "port": PORT,
        "ca": str(paths.ca_cert),
        "server_name": NAME,
        "client_cert": str(paths.client_cert),
        "client_key": str(paths.client_key),
        **extra,
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m gateway.lab.collector start|stop [--prefix P] [--config STATE_DIR]`.

    `start --config DIR` also writes DIR/alerts/config.yaml so that an alert service using
    state DIR sends to this collector (the lab policy must allow gw -> 198.18.20.10:6514).
    """
    import argparse

    from gateway.lab.lab import lab_paths

    parser = argparse.ArgumentParser(prog="python -m gateway.lab.collector")
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("--prefix", default="pg")
    parser.add_argument("--config", type=Path, help="state directory to point at it")
    args = parser.parse_args(argv)
    lab = lab_paths(args.prefix)
    if args.action == "stop":
        stop(lab)
        return 0
    paths = start(lab)
    if args.config is not None:
        (args.config / "alerts" / "config.yaml").unlink(missing_ok=True)  # this PKI now
        point_appliance(lab, args.config)
    print(f"collector on {ADDRESS}:{PORT} in {lab.namespace(HOST)}; messages in {paths.parsed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

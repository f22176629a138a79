"""The operator flow in a real browser: headless Chromium (Debian's) driven by Playwright,
against the real TLS server (`mes.server`) on 127.0.0.1.

Seeded through the services: a part; a released three-step process (scan the unit's serial
with a pattern, measure a bore between 12.3 and 12.5 mm, confirm); a work order; a
station; an operator with a badge and PIN; a quality person with password and TOTP.

Chromium trusts the appliance's own CA properly: the test gives it an empty HOME whose NSS
database (`certutil`, Debian's libnss3-tools) holds `ca.crt` as a trusted CA, exactly what
a plant does on a station screen. Without certutil it falls back to pinning the server
key (`--ignore-certificate-errors-spki-list`, which accepts that one key only, and says so).

Skipped, with the reason, when no Chromium binary or no Playwright is installed. On a
failure a screenshot is saved in the test's tmp directory.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mes import server, tls
from mes.auth import accounts
from mes.auth.accounts import Keys
from mes.auth.hashing import TEST_PARAMS
from mes.auth.secrets import load_secrets
from mes.config import MesSettings, load_settings
from mes.db import make_engine, utc_now
from mes.domain.actions import ActionKind
from mes.domain.actor import Actor
from mes.domain.content import ActionSpec, ProcessContent, StepSpec
from mes.domain.roles import Role
from mes.domain.signing import SignatureMethod
from mes.migrations import upgrade
from mes.models.people import Person, PersonRole, Station
from mes.services import parts, processes, workorders
from mes.signatures import SignatureGrant

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium")) if p and
                 os.path.exists(p)), None)  # fmt: skip
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium binary (Debian package 'chromium') on this machine"
)
PIN = "839201"
PASSWORD = "correct horse battery staple"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Plant:
    badge: str
    totp_secret: str
    operator_name: str


def _person(db: object, number: str, name: str, roles: set[Role]) -> Person:
    person = Person(employee_number=number, name=name)
    person.role_links = [PersonRole(role=r.value) for r in sorted(roles)]
    db.add(person)  # type: ignore[attr-defined]
    db.flush()  # type: ignore[attr-defined]
    return person


def _actor(person: Person) -> Actor:
    return Actor(person.id, person.employee_number, person.name, person.roles)


def seed(settings: MesSettings) -> Plant:
    from mes.audit import anchored_sessions

    upgrade(settings.database_url)
    keys = Keys.from_secrets(load_secrets(settings.secrets_dir), TEST_PARAMS)
    engine = make_engine(settings.database_url)
    with anchored_sessions(engine, settings.audit_anchor)() as db:
        db.add(Station(code="ST-1", name="Assembly 1", location="Line A"))
        operator = _person(db, "E100", "Olga Operator", {Role.OPERATOR})
        engineer = _person(db, "E200", "Erin Engineer", {Role.ENGINEER})
        reviewer = _person(db, "E300", "Quinn Quality", {Role.QUALITY})
        lead = _person(db, "E400", "Lee Lead", {Role.LEAD})
        accounts.set_pin(db, keys, operator, PIN)
        badge = accounts.issue_badge(db, keys, operator, None)
        accounts.set_password(db, keys, reviewer, PASSWORD)
        uri = accounts.begin_totp_enrolment(db, keys, reviewer)  # activated by the first code
        author, quality = _actor(engineer), _actor(reviewer)
        part = parts.create_part(db, author, parts.PartInput("WIDGET", "A", "Widget housing"))
        content = ProcessContent(
            "Widget assembly",
            (
                StepSpec("Label", "Scan the serial label on the housing.", (
                    ActionSpec(ActionKind.SCAN_SERIAL, "Unit serial", True,
                               {"pattern": "SN-[0-9]{4}", "match_unit": True}),
                )),
                StepSpec("Measure", "Measure the bore with the gauge.", (
                    ActionSpec(ActionKind.MEASURE, "Bore diameter", True,
                               {"min": 12.3, "max": 12.5, "unit": "mm"}),
                )),
                StepSpec("Finish", "Fit the cover.", (
                    ActionSpec(ActionKind.CONFIRM, "Cover fitted", True, {}),
                )),
            ),
        )  # fmt: skip
        process = processes.create_process(db, author, part.id, content)
        processes.submit(db, author, process.id)
        grant = SignatureGrant(reviewer.id, SignatureMethod.PASSWORD_TOTP, utc_now())
        processes.release(db, quality, process.id, grant)
        workorders.create_work_order(db, _actor(lead), part.id, 10, number="WO-100")
        db.commit()
        name = operator.name
    engine.dispose()
    return Plant(badge, pyotp.parse_uri(uri).secret, name)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[str, Plant, Path]]:
    state = tmp_path / "state"
    settings = load_settings(state)
    plant = seed(settings)
    uv, sockets = server.prepare(
        settings, [server.Bind("127.0.0.1", 0)], ["localhost"], access_log=False
    )
    port = sockets[0].getsockname()[1]
    thread = threading.Thread(target=uv.run, kwargs={"sockets": sockets}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert uv.started, "the MES server did not start"
    try:
        yield f"https://127.0.0.1:{port}", plant, tls.tls_paths(state).ca_cert
    finally:
        uv.should_exit = True
        thread.join(timeout=15)
        for sock in sockets:
            sock.close()


def trust(home: Path, ca: Path, server_cert: Path) -> list[str]:
    """Make Chromium (run with HOME=home) trust the appliance's CA; extra launch flags."""
    certutil = shutil.which("certutil")
    if certutil is not None:
        nssdb = home / ".pki" / "nssdb"
        nssdb.mkdir(parents=True)
        subprocess.run([certutil, "-N", "-d", f"sql:{nssdb}", "--empty-password"], check=True)
        subprocess.run(
            [certutil, "-A", "-d", f"sql:{nssdb}", "-n", "PlantGate MES CA", "-t", "C,,",
             "-i", str(ca)],
            check=True,
        )  # fmt: skip
        return []
    cert = x509.load_pem_x509_certificate(server_cert.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    print("certutil not found: pinning the server key instead of trusting the CA")
    return [f"--ignore-certificate-errors-spki-list={pin}"]


def test_operator_flow_then_history_on_the_manage_page(
    running: tuple[str, Plant, Path], tmp_path: Path
) -> None:
    base, plant, ca = running
    home = tmp_path / "home"
    home.mkdir()
    extra = trust(home, ca, ca.with_name("server.crt"))
    assert CHROMIUM is not None
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS + extra,
            env={**os.environ, "HOME": str(home)},
            ignore_https_errors=False,
            timeout=30_000,
        )
        context.set_default_timeout(10_000)
        page = context.new_page()
        try:
            run_flow(page, base, plant)
        except BaseException:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            print(f"screenshot: {tmp_path / 'failure.png'}")
            raise
        finally:
            context.close()


def run_flow(page: object, base: str, plant: Plant) -> None:
    expect = sync_api.expect
    p: sync_api.Page = page  # type: ignore[assignment]

    # Badge and PIN at the station.
    p.goto(f"{base}/station/ST-1")
    p.get_by_label("Scan your badge").fill(plant.badge)
    p.get_by_label("PIN").fill(PIN)
    p.get_by_role("button", name="Sign in").click()
    expect(p.get_by_role("heading", name="Pick a work order")).to_be_visible()
    expect(p.locator(".station-bar")).to_contain_text(plant.operator_name)

    # The work order, then the unit's serial.
    p.get_by_role("link", name="WO-100").click()
    p.get_by_label("Scan or type the unit's serial").fill("SN-0001")
    p.get_by_role("button", name="Start or continue the unit").click()
    expect(p.get_by_role("heading", name="Step 1 of 3: Label")).to_be_visible()

    # Step 1: scan the label.
    p.get_by_label("Unit serial").fill("SN-0001")
    p.get_by_role("button", name="Record step 1").click()
    expect(p.get_by_role("heading", name="Step 2 of 3: Measure")).to_be_visible()

    # Step 2: out of range, rejected with the message; corrected, accepted.
    p.get_by_label("Bore diameter").fill("12.7")
    p.get_by_role("button", name="Record step 2").click()
    expect(p.locator(".field-error")).to_have_text("12.7 mm is above the maximum 12.5 mm")
    expect(p.get_by_role("heading", name="Step 2 of 3: Measure")).to_be_visible()
    expect(p.get_by_label("Bore diameter")).to_have_value("12.7")
    p.get_by_label("Bore diameter").fill("12.4")
    p.get_by_role("button", name="Record step 2").click()
    expect(p.get_by_role("heading", name="Step 3 of 3: Finish")).to_be_visible()

    # Step 3: confirm; then complete the unit.
    p.get_by_label("Cover fitted").check()
    p.get_by_role("button", name="Record step 3").click()
    p.get_by_role("button", name="Complete unit SN-0001").click()
    expect(p.locator(".alert.ok")).to_contain_text("Unit SN-0001 completed.")
    p.get_by_role("button", name="Sign out").click()
    expect(p.get_by_role("heading", name="Sign in")).to_be_visible()

    # The Manage Page: password and a TOTP code, then the unit's history.
    p.goto(f"{base}/manage/login")
    p.get_by_label("Employee number").fill("E300")
    p.get_by_label("Password").fill(PASSWORD)
    p.get_by_label("Authenticator code").fill(pyotp.TOTP(plant.totp_secret).now())
    p.get_by_role("button", name="Sign in").click()
    expect(p.get_by_role("heading", name="Manage Page")).to_be_visible()
    p.get_by_label("Find a unit by serial").fill("SN-0001")
    p.get_by_role("button", name="Search").click()
    expect(p.get_by_role("heading", name="Unit SN-0001")).to_be_visible()
    history = p.locator("table.history tbody tr")
    expect(history).to_have_count(4)  # three steps, the measurement twice
    expect(history.nth(0)).to_contain_text("1. Label")
    expect(history.nth(1)).to_contain_text("2. Measure")
    expect(history.nth(1)).to_contain_text("12.7 mm")
    expect(history.nth(1)).to_contain_text("rejected")
    expect(history.nth(1)).to_contain_text("12.7 mm is above the maximum 12.5 mm")
    expect(history.nth(1)).to_contain_text("failed")
    expect(history.nth(2)).to_contain_text("12.4 mm")
    expect(history.nth(2)).to_contain_text("done again after a failed attempt")
    expect(history.nth(2)).to_contain_text("passed")
    expect(history.nth(3)).to_contain_text("3. Finish")
    for row in range(4):
        expect(history.nth(row)).to_contain_text(f"{plant.operator_name} (E100)")
        expect(history.nth(row)).to_contain_text("ST-1 Assembly 1")
    expect(p.locator("h1 .status")).to_have_text("completed")

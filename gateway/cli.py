"""`plantgate`: the appliance's command line (DESIGN §4).

Each area is a Typer sub-app in its own package; this module only mounts them.
"""

from __future__ import annotations

import logging

import typer

from gateway.alerts.cli import alerts_app
from gateway.audit_cli import audit_app
from gateway.lab.cli import lab_app
from gateway.ntp.cli import ntp_app
from gateway.policy import cli_explain, cli_plan, cli_revisions
from gateway.policy.cli import policy_app
from gateway.vpn.cli_gate import gate_app
from gateway.vpn.cli_vpn import vpn_app
from gateway.watch.cli import baseline_app
from mes import cli_serve
from mes.cli_audit import mes_app

app = typer.Typer(
    help="PlantGate: sealed gateway appliance for manufacturing plants.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# Policy commands live in modules of their own; each adds its commands to `policy`.
for module in (cli_revisions, cli_plan, cli_explain):
    module.register(policy_app)
app.add_typer(policy_app, name="policy")
app.add_typer(lab_app, name="lab")
app.add_typer(audit_app, name="audit")
app.add_typer(gate_app, name="gate")
app.add_typer(vpn_app, name="vpn")
app.add_typer(ntp_app, name="ntp")
app.add_typer(alerts_app, name="alerts")
app.add_typer(baseline_app, name="baseline")
cli_serve.register(mes_app)
app.add_typer(mes_app, name="mes")


def main() -> None:
    # Library warnings (a name that did not resolve) read as one line each, not as tracebacks.
    logging.basicConfig(level=logging.WARNING, format="plantgate: %(levelname)s: %(message)s")
    app()


if __name__ == "__main__":
    main()

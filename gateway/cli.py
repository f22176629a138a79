"""`plantgate`: the appliance's command line (DESIGN §4).

Each area is a Typer sub-app in its own package; this module only mounts them.
"""

from __future__ import annotations

import typer

from gateway.lab.cli import lab_app
from gateway.policy.cli import policy_app

app = typer.Typer(
    help="PlantGate: sealed gateway appliance for manufacturing plants.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(policy_app, name="policy")
app.add_typer(lab_app, name="lab")


def main() -> None:
    app()


if __name__ == "__main__":
    main()

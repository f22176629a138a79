"""Rules the policy implies: what the `time` section needs, written out as ordinary rules.

Declaring the NTP relay opens udp/123 from the served zones to the appliance and from the
appliance to the upstream endpoints (plus tcp/4460 for NTS key exchange). Deriving them as
plain rules, with names of their own, means the compiler, explain, plan and the policy
tests all see them the same way as the rules people write, and every generated nftables
rule still cites the YAML line it comes from (the `time` section's).
"""

from __future__ import annotations

from gateway.policy.model import SELF, Policy, Rule, Service
from gateway.policy.source import PathItem

TIME_SERVE = "time-serve"
TIME_UPSTREAM = "time-upstream"
NTP_SERVICE = "ntp-relay"
NTS_SERVICE = "ntp-relay-nts"
RESERVED_RULES = frozenset({TIME_SERVE, TIME_UPSTREAM})
RESERVED_SERVICES = frozenset({NTP_SERVICE, NTS_SERVICE})

RulePath = tuple[PathItem, ...]


def derive(policy: Policy) -> tuple[Policy, tuple[RulePath, ...]]:
    """The policy with its implied services and rules added, and each rule's YAML path."""
    paths: list[RulePath] = [("rules", index) for index in range(len(policy.rules))]
    time = policy.time
    if time is None:
        return policy, tuple(paths)
    services = dict(policy.services)
    services[NTP_SERVICE] = Service(description="NTP (the relay)", udp=[123])
    upstream_allow = [NTP_SERVICE]
    if time.nts:
        services[NTS_SERVICE] = Service(description="NTS key exchange", tcp=[4460])
        upstream_allow.append(NTS_SERVICE)
    rules = [
        *policy.rules,
        Rule.model_validate(
            {
                "name": TIME_SERVE,
                "from": list(time.serve),
                "to": SELF,
                "allow": [NTP_SERVICE],
                "comment": "time.serve: the NTP relay answers these zones",
            }
        ),
        Rule.model_validate(
            {
                "name": TIME_UPSTREAM,
                "from": SELF,
                "to": list(time.upstreams),
                "allow": upstream_allow,
                "comment": "time.upstreams: the relay syncs from these only",
            }
        ),
    ]
    paths += [("time", "serve"), ("time", "upstreams")]
    return policy.model_copy(update={"services": services, "rules": rules}), tuple(paths)

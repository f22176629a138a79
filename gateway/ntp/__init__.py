"""The NTP relay: chrony serves the hubs time, PlantGate owns its configuration and life.

`config` renders chrony.conf from the policy's `time` section (pure), `chronyc` parses
chronyc's CSV reports (pure), `monitor` turns NTP samples into events (pure); `chronyd`,
`query` and `service` are the adapters (process, ntplib, plantgated), `cli` is
`plantgate ntp status`. Decisions: docs/decisions/0005-ntp-relay.md.
"""

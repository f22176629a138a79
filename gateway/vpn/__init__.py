"""The support VPN: WireGuard control, the support gate (requests, approvals, windows), records."""

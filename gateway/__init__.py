"""PlantGate gateway: policy engine, lab, VPN, NTP relay, watcher."""

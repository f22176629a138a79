"""MITRE ATT&CK techniques PlantGate's rules map to, as `Technique` constants.

ATT&CK for ICS first (tactics TA01xx, techniques T08xx); Enterprise ATT&CK only where ICS has
no equivalent: ICS has no Exfiltration or Credential Access tactic and no firewall-tampering
technique. Detectors pick from here so that every rule names its technique the same way and
docs/soc/alert-feeds.md can list them. IDs and names as published by MITRE (attack.mitre.org).
"""

from __future__ import annotations

from gateway.alerts.record import Technique

# --- ATT&CK for ICS ------------------------------------------------------------------------
REMOTE_SYSTEM_DISCOVERY = Technique("T0846", "Remote System Discovery", "TA0102", "Discovery")
NETWORK_CONNECTION_ENUMERATION = Technique(
    "T0840", "Network Connection Enumeration", "TA0102", "Discovery"
)
NETWORK_SNIFFING = Technique("T0842", "Network Sniffing", "TA0102", "Discovery")
REMOTE_SERVICES = Technique("T0886", "Remote Services", "TA0109", "Lateral Movement")
EXTERNAL_REMOTE_SERVICES = Technique(
    "T0822", "External Remote Services", "TA0108", "Initial Access"
)
INTERNET_ACCESSIBLE_DEVICE = Technique(
    "T0883", "Internet Accessible Device", "TA0108", "Initial Access"
)
VALID_ACCOUNTS = Technique("T0859", "Valid Accounts", "TA0109", "Lateral Movement")
STANDARD_APPLICATION_LAYER_PROTOCOL = Technique(
    "T0869", "Standard Application Layer Protocol", "TA0101", "Command and Control"
)
COMMONLY_USED_PORT = Technique("T0885", "Commonly Used Port", "TA0101", "Command and Control")
ADVERSARY_IN_THE_MIDDLE = Technique("T0830", "Adversary-in-the-Middle", "TA0100", "Collection")
DENIAL_OF_SERVICE = Technique("T0814", "Denial of Service", "TA0107", "Inhibit Response Function")
LOSS_OF_VIEW = Technique("T0829", "Loss of View", "TA0105", "Impact")

# --- Enterprise ATT&CK (ICS has none) -----------------------------------------------------
EXFILTRATION_OVER_C2 = Technique(
    "T1041", "Exfiltration Over C2 Channel", "TA0010", "Exfiltration", "enterprise"
)
EXFILTRATION_OVER_ALTERNATIVE_PROTOCOL = Technique(
    "T1048", "Exfiltration Over Alternative Protocol", "TA0010", "Exfiltration", "enterprise"
)
INDICATOR_REMOVAL = Technique("T0872", "Indicator Removal on Host", "TA0103", "Evasion")
BRUTE_FORCE = Technique("T1110", "Brute Force", "TA0006", "Credential Access", "enterprise")
DISABLE_OR_MODIFY_FIREWALL = Technique(
    "T1562.004",
    "Impair Defenses: Disable or Modify System Firewall",
    "TA0005",
    "Defense Evasion",
    "enterprise",
)

CATALOGUE: tuple[Technique, ...] = (
    REMOTE_SYSTEM_DISCOVERY,
    NETWORK_CONNECTION_ENUMERATION,
    NETWORK_SNIFFING,
    REMOTE_SERVICES,
    EXTERNAL_REMOTE_SERVICES,
    INTERNET_ACCESSIBLE_DEVICE,
    VALID_ACCOUNTS,
    STANDARD_APPLICATION_LAYER_PROTOCOL,
    COMMONLY_USED_PORT,
    ADVERSARY_IN_THE_MIDDLE,
    DENIAL_OF_SERVICE,
    LOSS_OF_VIEW,
    EXFILTRATION_OVER_C2,
    EXFILTRATION_OVER_ALTERNATIVE_PROTOCOL,
    BRUTE_FORCE,
    DISABLE_OR_MODIFY_FIREWALL,
    INDICATOR_REMOVAL,
)

"""PlantGate MES application (later issues)."""

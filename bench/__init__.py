"""PlantGate's benchmarks (`make bench`, `python -m bench`): ours against baselines, side by side.

DESIGN §5 "Measured, not asserted": speed and memory figures come from here, measured in one
run on this machine, with medians and their spread, never from a test's timing assertion.
Everything that loads a ruleset or sends a packet does it inside network namespaces this
package creates and removes; the machine's own namespace is only ever read.
"""

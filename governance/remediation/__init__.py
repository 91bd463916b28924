"""Enforce mode: open violations of enforce-mode policies get their fix queued through the command
queue, within each policy's safety rails (docs/policies.md, "Enforce mode").

- `plan`: pure logic (violation → command, window, budget, backoff, breaker);
- `services`: the settings, the preview and the beat's `remediation_tick`;
- `choices`: attempt outcomes.
"""

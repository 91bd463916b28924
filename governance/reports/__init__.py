"""Reports (#16): the per-policy and per-group compliance report for a date range, from the daily
ComplianceSnapshot rows, and the optional weekly e-mail digest to the admins."""

"""The test harness: stand-ins for SES and SNS, service processes, and the
helpers test modules share (no tests live here)."""

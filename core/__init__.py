"""What every process shares: settings, the Temporal connection and its one data converter,
payload encryption, logging, the policy book and the embedded HTTP server helpers."""

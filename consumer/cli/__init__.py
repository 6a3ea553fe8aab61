"""The `cert-consumer` command: parses arguments, loads settings, calls a use case, prints."""

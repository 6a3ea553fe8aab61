"""What an operator sees: metrics, liveness, dependency state, HTTP endpoints, logs."""

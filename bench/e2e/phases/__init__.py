"""One module per phase of the report; each ``run(ctx)`` returns its raw figures as JSON-able
data and stops everything it started, whatever happens."""

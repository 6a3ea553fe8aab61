"""`python -m consumer.cli` is `cert-consumer`."""

from consumer.cli.main import main

raise SystemExit(main())

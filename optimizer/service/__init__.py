"""The optimizer service: engine, HTTP API, auth, scheduler, webhooks and CLI."""

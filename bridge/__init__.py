"""cancel-bridge runtime: settings, receiver, broker plumbing, CLI."""

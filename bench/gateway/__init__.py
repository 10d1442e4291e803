"""The gateway benchmark (scenario 9): a fixed upstream, the gateways, a load generator."""

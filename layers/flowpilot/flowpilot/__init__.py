"""FlowPilot Writeback shared layer: domain, stores, PSA providers and note writers."""

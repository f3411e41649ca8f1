"""Dev-only tools: the local stack, the ConnectWise simulator, the demo. Never shipped in the layer."""

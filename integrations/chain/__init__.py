"""Chain adapters: JSON-RPC with failover and batching, ABI helpers, Multicall3 reads, anvil."""

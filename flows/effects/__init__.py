"""Side effects that happen exactly once: transactions, Safe, nonces, unlocking signers, prepared pauses, messages."""

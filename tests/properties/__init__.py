"""Property-based verification: a state machine over every command, and replay properties."""

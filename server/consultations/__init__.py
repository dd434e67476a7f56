"""Consultations: booking, the state machine, specialist invites and join tokens."""

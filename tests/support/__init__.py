"""Helpers the test tiers share: real services started for the test session, and stand-ins."""

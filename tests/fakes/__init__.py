"""Loopback servers and recording fakes that answer like the real APIs."""

"""Helpers shared by the test suites: real servers and real clients to test against."""

"""The test suite: `make test` runs it; support modules live beside the tests."""

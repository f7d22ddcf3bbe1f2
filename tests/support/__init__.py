"""What tests share: helpers, fake servers and clients, in one place (fixtures are in tests/conftest.py)."""

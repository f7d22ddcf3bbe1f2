"""The Vocode dialect: its routes, request/response shapes and errors, acting through domain functions."""

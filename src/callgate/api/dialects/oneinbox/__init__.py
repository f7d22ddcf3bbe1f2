"""The Oneinbox dialect: its routes, request/response shapes and errors, acting through domain functions."""

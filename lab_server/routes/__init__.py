"""Thin HTTP routers: parse, authenticate, call one service, return a wire type."""

"""Refusals of the platform API, each with the HTTP status it maps to and a message saying what is wrong."""
from __future__ import annotations


class AccessRefused(Exception):
    status = 400

    def __init__(self, message: str, **headers: str):
        super().__init__(message)
        self.message, self.headers = message, headers


class NotAuthenticated(AccessRefused):
    status = 401


class Forbidden(AccessRefused):
    status = 403


class Missing(AccessRefused):
    status = 404


class Conflict(AccessRefused):
    status = 409


class TooLarge(AccessRefused):
    status = 413


class Unsupported(AccessRefused):
    status = 415


class Invalid(AccessRefused):
    status = 422


class Throttled(AccessRefused):
    status = 429


class Unavailable(AccessRefused):
    status = 503

"""The one exception type the serving code raises for a request it cannot answer, with its gRPC status code;
both front ends (serving/grpc_api.py, serving/rest.py) turn it into their status (ModelServer.status_of)."""

from __future__ import annotations

import grpc


class ServingError(Exception):
    """An error with the gRPC status code it maps to."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


def invalid(msg: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, msg)


def not_found(msg: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, msg)

"""Checks the recommend tests share: two answers equal, a gRPC request refused with INVALID_ARGUMENT naming the
input, a REST predict call."""

import grpc
import numpy as np
import pytest
import requests


def assert_same(got, want):
    """A decoded served answer equals the stock signature's output arrays."""
    assert got["item_ids"] == want["item_ids"].astype(str).tolist()
    assert got["titles"] == want["titles"].astype(str).tolist()
    np.testing.assert_allclose(got["scores"], want["scores"], rtol=1e-4, atol=1e-5)
    assert got["history_used"] == want["history_used"].tolist()


def expect_invalid(env, req, text):
    with pytest.raises(grpc.RpcError) as e:
        env["stub"].Predict(req, timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert text in e.value.details(), e.value.details()


def rest_predict(env, body):
    r = requests.post(env["url"] + "/v1/models/pinsage:predict", json=body, timeout=30)
    return r.status_code, r.json()

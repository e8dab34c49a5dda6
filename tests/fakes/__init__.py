"""Test doubles for external services (a fake Azure Custom Vision server on 127.0.0.1)."""

from tests.fakes.customvision_server import (
    FAKE_PREDICTION_RESOURCE_ID,
    FakeCustomVision,
    FaultRule,
    RecordedRequest,
)

__all__ = ["FAKE_PREDICTION_RESOURCE_ID", "FakeCustomVision", "FaultRule", "RecordedRequest"]

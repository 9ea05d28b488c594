"""Schedules against references that are not test dependencies, from values recorded
by ``tests/conformance/record_schedule_fixtures.py`` (Hugging Face's WSD, Keras'
inverse-time decay; versions in ``MANIFEST-schedules.json``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gradstep import schedules as S

FIXTURES = Path(__file__).parents[1] / "conformance" / "fixtures" / "schedules"
CASES = json.loads((FIXTURES / "schedules.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_schedule_matches_recorded_reference(case):
    schedule = getattr(S, case["schedule"])(**case["kwargs"])
    want = np.array(case["values"])
    np.testing.assert_allclose(schedule(np.arange(len(want))), want, rtol=case["rtol"], atol=1e-15)


def test_manifest_names_the_references():
    manifest = json.loads((FIXTURES / "MANIFEST-schedules.json").read_text())
    assert {"transformers", "keras"} <= set(manifest["versions"])
    assert {c["reference"] for c in CASES} == {
        "transformers.get_wsd_schedule",
        "keras.optimizers.schedules.InverseTimeDecay",
    }

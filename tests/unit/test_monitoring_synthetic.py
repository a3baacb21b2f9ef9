"""The synthetic exporter's sample data speaks the catalogue's label values, no others."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry

from monitoring import catalogue, synthetic
from monitoring.catalogue import Part
from recoil.core.events import INVALID_CODES


def test_sample_rates_cover_exactly_the_catalogued_values() -> None:
    assert set(synthetic.EVENT_RATES) == set(catalogue.OUTCOMES)
    assert set(synthetic.RESPONSE_SHARES) == set(catalogue.RESPONSES)


def test_ticks_export_only_catalogued_label_values() -> None:
    registry = CollectorRegistry()
    exporter = synthetic.SyntheticExporter(registry, tuple(Part), np.random.default_rng(0))
    for tick in range(200):
        exporter.tick(float(tick), 1.0)
    by_family = {m.family: m for m in catalogue.CATALOGUE}
    for family in registry.collect():
        labels = by_family[family.name].labels
        closed = {label.name: set(label.values) for label in labels if label.values}
        for sample in family.samples:
            for name, value in sample.labels.items():
                if name in closed:
                    assert value in closed[name], (family.name, name, value)
    reasons = {
        s.labels["reason"]
        for f in registry.collect()
        if f.name == "recoil_stream_invalid_events"
        for s in f.samples
        if s.value > 0
    }
    assert reasons and reasons <= set(INVALID_CODES)

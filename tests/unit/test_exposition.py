"""The fast text-format writer agrees with client_python's parser and escaping."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from broker.exposition import Family, escape, render


def test_round_trip_through_the_reference_parser() -> None:
    gauge = Family("vdi_x", "gauge", "A gauge", ["host"])
    gauge.add(["h1"], 1)
    gauge.extend([(("h2",), 0.25)])
    counter = Family("vdi_y", "counter", "A counter", ["pool", "result"])
    counter.add(["Bürgerbüro", "assigned"], 3)
    hist = Family("vdi_z_seconds", "histogram", "A histogram", ["pool"])
    hist.add_histogram(["p"], [("0.5", 1.0), ("1.0", 2.0), ("+Inf", 3.0)], 2.5)
    plain = Family("vdi_w", "gauge", "No labels")
    plain.add([], float("inf"))
    text = render([gauge, counter, hist, plain]).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert [(s.labels, s.value) for s in families["vdi_x"].samples] == [
        ({"host": "h1"}, 1.0),
        ({"host": "h2"}, 0.25),
    ]
    assert families["vdi_y"].type == "counter"
    assert families["vdi_y"].samples[0].name == "vdi_y_total"
    assert families["vdi_y"].samples[0].labels == {"pool": "Bürgerbüro", "result": "assigned"}
    buckets = [s for s in families["vdi_z_seconds"].samples if s.name.endswith("_bucket")]
    assert [(s.labels["le"], s.value) for s in buckets] == [
        ("0.5", 1.0),
        ("1.0", 2.0),
        ("+Inf", 3.0),
    ]
    assert families["vdi_w"].samples[0].value == float("inf")


def test_escape_for_free_form_values() -> None:
    family = Family("vdi_v", "gauge", "v", ["agent_version"])
    family.add([escape('1.0 "beta"\\\nx')], 1)
    parsed = next(text_string_to_metric_families(render([family]).decode()))
    assert parsed.samples[0].labels == {"agent_version": '1.0 "beta"\\\nx'}


def test_to_metric_matches() -> None:
    family = Family("vdi_y", "counter", "c", ["pool"])
    family.add(["p"], 2)
    metric = family.to_metric()
    assert [(s.name, s.labels, s.value) for s in metric.samples] == [
        ("vdi_y_total", {"pool": "p"}, 2)
    ]

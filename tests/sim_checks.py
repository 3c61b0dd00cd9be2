"""What every simulation test asserts of a `nomac.sim.runner.simulate` report."""


def check_report(report):
    """A simulation passed: bit-exact, no protocol, framing or read-back errors, and the
    measured cycles per vector and latency equal the design's (the manifest's) figures."""
    assert report.mismatched_vectors == 0, report.summary()
    assert not report.protocol_errors and not report.framing_errors, report.summary()
    assert not report.memory_errors, report.summary()
    assert report.cycles_per_vector == report.manifest["cycles_per_vector"], report.summary()
    assert report.latency_cycles == report.manifest["latency_cycles"], report.summary()

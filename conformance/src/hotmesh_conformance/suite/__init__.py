"""The provider-level suites; run with ``pytest --pyargs hotmesh_conformance.suite``."""

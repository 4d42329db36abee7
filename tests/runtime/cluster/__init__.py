# Ray's core reads RAY_AUTH_MODE once, when ray is first imported (even by pytest.importorskip): the cluster
# room switches token authentication on at its import, so it is imported before any test module here.
import vreyesam.runtime.cluster  # noqa: F401

"""Suite-wide settings."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """The tests use tiny networks, for which a second CPU thread costs more in OpenMP
    synchronisation than it gains (and much more on a shared machine). Subprocesses the tests
    start keep torch's default."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

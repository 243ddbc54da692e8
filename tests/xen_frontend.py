"""The test frontend: pvboot.tools.blkif_client's frontend under its test name.

The frontend lives in the package so `pvboot fuzz blkif` (an installed tool, which
cannot import tests/) uses the same code as the tests.
"""

from pvboot.tools.blkif_client import (DOMID_BACKEND, DOMID_GUEST, NR_DATA_PAGES, WAIT, XVDA,
                                       BlkifFrontend, FrontendError)

__all__ = ["DOMID_BACKEND", "DOMID_GUEST", "NR_DATA_PAGES", "WAIT", "XVDA", "FrontendError",
           "TestFrontend"]


class TestFrontend(BlkifFrontend):
    __test__ = False     # a helper, not a pytest test class

"""The checkout's own pytest setup. The suite's options, fixtures and ledger come from its plugin
(attnclaims.fixtures.plugin), which `make install` registers by installing the checkout; the tests of
that plugin run it in temporary projects with `pytester`."""

pytest_plugins = ["pytester"]

"""The notebooks, run under nbval by the test command (a package only so that its conftest.py does not clash with
tests/conftest.py: both would be the top-level module ``conftest``)."""

"""Browser tests (Playwright driving Debian's Chromium) and the demo-process helper."""

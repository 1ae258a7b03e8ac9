"""Fake platforms for tests: small scripted servers on `bridge.demo.fake_platform.FakePlatform`."""

"""Registers the `question` marker the tests carry (the grader reads it; students can ignore it)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "question(id, points): the question a test grades and its points")

from tests.providers.fake_openai import fake_openai, openai_server  # noqa: F401 - fixtures

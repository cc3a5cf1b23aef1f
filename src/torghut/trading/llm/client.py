"""Builds the review provider that `Settings` asks for (`LLM_PROVIDER`).

The seed's `client.py` called OpenAI directly; here it only chooses and configures a provider.
Providers are built when the LLM is actually used, so a missing key is reported then, as a
`ConfigError` naming the variable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from torghut.config import LLMProvider, Settings
from torghut.errors import ConfigError
from torghut.ports import ReviewProvider
from torghut.trading.llm.jangar import JangarConfig, JangarProvider

if TYPE_CHECKING:
    # The openai SDK costs a fifth of a second to import: only when it is the provider.
    from torghut.trading.llm.openai import OpenAIConfig

# Sent to an OpenAI-compatible server at OPENAI_BASE_URL that asked for no key; never to
# api.openai.com (without a base URL a missing key is a configuration error).
NO_KEY_PLACEHOLDER = "unset"


def jangar_config_from(settings: Settings) -> JangarConfig:
    if not settings.jangar_base_url:
        raise ConfigError("JANGAR_BASE_URL", "is required when LLM_PROVIDER=jangar")
    key = settings.jangar_api_key.get_secret_value() if settings.jangar_api_key else None
    return JangarConfig(
        base_url=settings.jangar_base_url,
        api_key=key or None,
        model=settings.llm_model,
        timeout_seconds=settings.llm_timeout_seconds,
        connect_timeout_seconds=settings.llm_connect_timeout_seconds,
        first_token_timeout_seconds=settings.llm_first_token_timeout_seconds,
        idle_timeout_seconds=settings.llm_idle_timeout_seconds,
        max_response_bytes=settings.llm_max_response_bytes,
        max_retries=settings.llm_max_retries,
        secrets=tuple(settings.secrets()),
    )


def openai_config_from(settings: Settings) -> OpenAIConfig:
    from torghut.trading.llm.openai import OpenAIConfig

    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
    if not key:
        if not settings.openai_base_url:
            raise ConfigError("OPENAI_API_KEY", "is required when LLM_PROVIDER=openai")
        key = NO_KEY_PLACEHOLDER
    return OpenAIConfig(
        api_key=key,
        base_url=settings.openai_base_url,
        model=settings.llm_model,
        temperature=settings.llm_temperature,
        max_tokens=settings.llm_max_tokens,
        timeout_seconds=settings.llm_timeout_seconds,
        connect_timeout_seconds=settings.llm_connect_timeout_seconds,
        first_token_timeout_seconds=settings.llm_first_token_timeout_seconds,
        idle_timeout_seconds=settings.llm_idle_timeout_seconds,
        max_response_bytes=settings.llm_max_response_bytes,
        max_retries=settings.llm_max_retries,
        secrets=tuple(settings.secrets()),
    )


def build_provider(
    settings: Settings, *, http_client: httpx.AsyncClient | None = None
) -> ReviewProvider:
    """The provider `settings.provider` names. `http_client` is shared by the Jangar provider
    (which then leaves it open); the OpenAI SDK keeps its own client."""
    if settings.provider is LLMProvider.JANGAR:
        return JangarProvider(jangar_config_from(settings), client=http_client)
    from torghut.trading.llm.openai import OpenAIProvider

    return OpenAIProvider(openai_config_from(settings))

"""Versioned prompt templates (package data) and the messages built from them.

`prompt_templates/system_<version>.txt` is the system prompt of version `<version>`
(`LLM_PROMPT_VERSION`). It uses `string.Template` placeholders (`$min_confidence`, ...) rather
than `str.format`, because the text states a JSON schema full of braces. An unknown version or
an unknown placeholder is a start-up `ConfigError`, never a silent fallback to another prompt.

The user message is one short sentence and the request as compact JSON. The sentence holds no
brace, so the request is the first JSON object of the message: the dev gateway (and any reader
of the audit row) finds it there.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from importlib import resources
from string import Template

from torghut.errors import ConfigError
from torghut.ports import ChatMessage
from torghut.trading.llm.schema import LLMReviewRequest, PolicyBounds

TEMPLATE_PACKAGE = "torghut.trading.llm"
TEMPLATE_DIR = "prompt_templates"
_TEMPLATE_NAME = re.compile(r"^system_([A-Za-z0-9_.-]+)\.txt$")
_VERSION = re.compile(r"^[A-Za-z0-9_.-]+$")

USER_PREAMBLE = "Review this proposed trade. The request as JSON:"

PLACEHOLDERS = frozenset(
    {
        "min_confidence",
        "adjustment_allowed",
        "adjustment_rule",
        "min_qty_multiplier",
        "max_qty_multiplier",
        "allowed_order_types",
    }
)


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    version: str
    text: str
    sha256: str  # of the template text as shipped: identifies the prompt in audit rows


def available_versions() -> list[str]:
    directory = resources.files(TEMPLATE_PACKAGE).joinpath(TEMPLATE_DIR)
    versions = []
    for entry in directory.iterdir():
        match = _TEMPLATE_NAME.match(entry.name)
        if match and entry.is_file():
            versions.append(match.group(1))
    return sorted(versions)


def load_prompt(version: str) -> PromptTemplate:
    """The template of `version`. Raises `ConfigError("LLM_PROMPT_VERSION", ...)` when there is
    none, or when it uses a placeholder this module does not fill."""
    available = available_versions()
    if not _VERSION.match(version) or version not in available:
        listed = ", ".join(available) or "none"
        raise ConfigError(
            "LLM_PROMPT_VERSION", f"no prompt template {version!r} (available: {listed})"
        )
    directory = resources.files(TEMPLATE_PACKAGE).joinpath(TEMPLATE_DIR)
    text = directory.joinpath(f"system_{version}.txt").read_text(encoding="utf-8")
    template = Template(text)
    if not template.is_valid():
        raise ConfigError(
            "LLM_PROMPT_VERSION", f"template {version!r} has a malformed $ placeholder"
        )
    unknown = set(template.get_identifiers()) - PLACEHOLDERS
    if unknown:
        raise ConfigError(
            "LLM_PROMPT_VERSION",
            f"template {version!r} uses unknown placeholders: {', '.join(sorted(unknown))}",
        )
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return PromptTemplate(version=version, text=text, sha256=digest)


def _number(value: float) -> str:
    # 0.5 rather than 0.50000; integers without a trailing .0.
    return f"{value:g}"


def render_system(template: PromptTemplate, bounds: PolicyBounds) -> str:
    if bounds.adjustment_allowed:
        rule = "Adjustments are allowed (adjustment_allowed = true)."
    else:
        rule = (
            "Adjustments are NOT allowed (adjustment_allowed = false): an adjust verdict is "
            "treated as a veto, so answer approve or veto."
        )
    values = {
        "min_confidence": _number(bounds.min_confidence),
        "adjustment_allowed": "true" if bounds.adjustment_allowed else "false",
        "adjustment_rule": rule,
        "min_qty_multiplier": _number(bounds.min_qty_multiplier),
        "max_qty_multiplier": _number(bounds.max_qty_multiplier),
        "allowed_order_types": ", ".join(t.value for t in bounds.allowed_order_types) or "none",
    }
    return Template(template.text).substitute(values)


def render_user(request: LLMReviewRequest) -> str:
    body = json.dumps(request.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False)
    return f"{USER_PREAMBLE}\n{body}"


def build_messages(template: PromptTemplate, request: LLMReviewRequest) -> list[ChatMessage]:
    """System prompt with the request's policy bounds filled in, then the request itself."""
    return [
        {"role": "system", "content": render_system(template, request.policy)},
        {"role": "user", "content": render_user(request)},
    ]

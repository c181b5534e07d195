"""The structlog redaction processor: phone numbers, ID-card numbers and e-mail addresses never
reach a log line, wherever they hide in the event (message, values, nested, exceptions).
"""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from shared.base.log import configure_logging

PHONE, ID_CARD, EMAIL = "13812345678", "50023419900101123X", "zhang.san@example.cn"


@pytest.fixture
def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    configure_logging("test", "json", "info")
    log = structlog.get_logger("redaction-test")
    log.info(f"reported by {PHONE}", phone=PHONE, nested={"card": ID_CARD, "to": [EMAIL]})
    log.warning("contact", text=f"call +86 {PHONE} or mail {EMAIL}; id {ID_CARD.lower()}")
    try:
        raise ValueError(f"bad phone {PHONE}")
    except ValueError:
        log.exception("failed")
    logging.getLogger("aiohttp.access").warning("stdlib line from %s", EMAIL)
    structlog.reset_defaults()
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_phones_id_cards_and_emails_are_redacted_everywhere(lines: list[dict[str, object]]) -> None:
    text = json.dumps(lines, ensure_ascii=False)
    assert len(lines) == 4
    for secret in (PHONE, ID_CARD, ID_CARD.lower(), EMAIL):
        assert secret not in text
    assert "[phone]" in text and "[id-card]" in text and "[email]" in text


def test_ids_and_numbers_that_are_not_personal_data_are_kept() -> None:
    from shared.base.log import redact

    assert redact("case 4f0c2a1e-9b7d-4c36-8a55-000000000001 position 138123456789012") == (
        "case 4f0c2a1e-9b7d-4c36-8a55-000000000001 position 138123456789012"
    )

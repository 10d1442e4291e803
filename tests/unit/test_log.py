from __future__ import annotations

import logging
import pathlib

import pytest

from flyllm import use_logging


def test_level_comes_from_flyllm_log(monkeypatch: pytest.MonkeyPatch) -> None:
    logger = logging.getLogger("flyllm")
    before = (logger.level, list(logger.handlers))
    try:
        monkeypatch.setenv("FLYLLM_LOG", "debug")
        assert use_logging().level == logging.DEBUG
        monkeypatch.setenv("FLYLLM_LOG", "ERROR")
        assert use_logging() is logger and logger.level == logging.ERROR
        assert len(logger.handlers) == len(before[1]) + 1  # a second call adds no handler
        monkeypatch.delenv("FLYLLM_LOG")
        assert use_logging(default="info").level == logging.INFO
        monkeypatch.setenv("FLYLLM_LOG", "loud")
        with pytest.raises(ValueError, match="FLYLLM_LOG='loud'"):
            use_logging()
    finally:
        logger.setLevel(before[0])
        logger.handlers[:] = before[1]


def test_log_file(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    logger = logging.getLogger("flyllm")
    before = (logger.level, list(logger.handlers))
    try:
        monkeypatch.setenv("FLYLLM_LOG", "info")
        use_logging(log_file=tmp_path / "flyllm.log")
        logger.info("failing over after attempt 1: example")
        for handler in logger.handlers:
            handler.flush()
        assert "INFO    flyllm: failing over" in (tmp_path / "flyllm.log").read_text()
    finally:
        for handler in logger.handlers:
            if handler not in before[1]:
                handler.close()
        logger.setLevel(before[0])
        logger.handlers[:] = before[1]

"""Logging set-up in the spirit of the original's RUST_LOG: ``FLYLLM_LOG=debug``."""

from __future__ import annotations

import logging
import os

__all__ = ["use_logging"]

_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "off": logging.CRITICAL + 10,
}


def use_logging(
    default: str = "warning", log_file: str | os.PathLike[str] | None = None
) -> logging.Logger:
    """Send flyllm's log to stderr (or to ``log_file``, appended) at the level named in
    ``FLYLLM_LOG`` (debug, info, warning, error, off; ``default`` when unset). Each attempt logs
    at debug (attempt, instance, provider, model, status, latency), failovers at warning; no log
    line ever contains an API key. Returns the "flyllm" logger. Calling it again changes the
    level and the destination."""
    name = os.environ.get("FLYLLM_LOG", default).strip().lower()
    level = _LEVELS.get(name)
    if level is None:
        raise ValueError(f"FLYLLM_LOG={name!r} is not a level; use one of: {', '.join(_LEVELS)}")
    logger = logging.getLogger("flyllm")
    logger.setLevel(level)
    for old in [h for h in logger.handlers if h.get_name() == "flyllm"]:
        logger.removeHandler(old)
        old.close()
    handler: logging.Handler
    if log_file is None:
        handler = logging.StreamHandler()
    else:
        handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.set_name("flyllm")
    logger.addHandler(handler)
    return logger

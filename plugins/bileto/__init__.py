"""Bileto's landing-ticket API v1 as a ci-master plugin (see :class:`BiletoPlugin`)."""

from plugins.bileto.plugin import BiletoPlugin

__all__ = ["BiletoPlugin"]

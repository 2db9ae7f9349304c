"""What every bench process shares: the plain data converter (no payload encryption)."""

from __future__ import annotations

from temporalio.converter import DataConverter

from core.settings import Settings
from core.temporal import data_converter

CONVERTER: DataConverter = data_converter(Settings(codec_keys=None))

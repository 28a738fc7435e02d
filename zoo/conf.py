"""The GALCAT_ settings the zoo app reads (defaults: config/settings.py, see core.conf)."""

from core.conf import AppSettings

conf = AppSettings(
    "zoo",
    "CONSENSUS_METHOD",
    "CONSENSUS_SCORES",
    "CONSENSUS_TASK",
    "SAMPLE_DATA",
    "VOTE_RATE",
    "ZOO_CALIBRATION_RATE",
    "ZOO_UNCERTAINTY",
)

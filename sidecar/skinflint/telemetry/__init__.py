"""OpenTelemetry for skinflint: one span per call with gen_ai.* and skinflint.* attributes,
span events for retries, fallbacks and budgets, cost/token/cache metrics, exporters by config.

``recorder.Telemetry`` is the App's handle; ``setup`` builds the providers from config;
``events`` is what the pipeline calls to add an event to the current span.
"""

from skinflint.telemetry.recorder import Observation, Telemetry, status_name

__all__ = ["Observation", "Telemetry", "status_name"]

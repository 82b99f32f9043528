"""The span attribute names the OTLP exporter writes, in one place.

GenAI names follow the OpenTelemetry semantic conventions for generative AI as of **semantic conventions v1.41.1**
(`SEMCONV_VERSION`; every `gen_ai.*` name there is at stability *Development*). The GenAI conventions have since
moved to their own repository (open-telemetry/semantic-conventions-genai), where, unreleased, cache writes are being
renamed `gen_ai.usage.cache_write.input_tokens`; a change of version changes this module only.

Rules of that version this exporter follows:
- `gen_ai.usage.input_tokens` includes *all* input tokens, cached ones too: cache reads and cache writes are
  also given apart (`gen_ai.usage.cache_read.input_tokens`, `gen_ai.usage.cache_creation.input_tokens`) and are
  included in it. Anthropic's `usage.input_tokens` excludes both, so the exporter sums the three.
- Usage goes on the `chat {model}` spans only, never on the `invoke_agent` span (its totals would be counted
  twice by tools that sum every span of a trace).
- `error.type` is low-cardinality: `_OTHER` when the type is not known.

Names outside the conventions are ours (`itertrack.*`) or Langfuse's (`langfuse.*`, read by its OTLP endpoint).
"""

from __future__ import annotations

from typing import Final

SEMCONV_VERSION: Final = "1.41.1"
SCHEMA_URL: Final = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"

# -- OpenTelemetry GenAI (Development) ---------------------------------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
OPERATION_INVOKE_AGENT: Final = "invoke_agent"
OPERATION_CHAT: Final = "chat"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_AGENT_ID: Final = "gen_ai.agent.id"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"

# -- OpenTelemetry general (error.type is Stable; error.message is Development) ---------------------------------
ERROR_TYPE: Final = "error.type"
ERROR_TYPE_OTHER: Final = "_OTHER"
ERROR_MESSAGE: Final = "error.message"

# -- itertrack's own -------------------------------------------------------------------------------------------
ITERATION_ID: Final = "itertrack.iteration.id"
ITERATION_NUMBER: Final = "itertrack.iteration.number"
ITERATION_STATUS: Final = "itertrack.iteration.status"
RECORD_STATUS: Final = "itertrack.record.status"
PHASE: Final = "itertrack.phase"
PHASE_VERSION: Final = "itertrack.phase.version"  # the iteration version that entered the phase
EVENT_VERSION: Final = "itertrack.event.version"
COST_USD: Final = "itertrack.cost.usd"  # double, dollars (exact figure rounded to a float)
COST_COMPLETE: Final = "itertrack.cost.complete"  # every call of the span's subtree was priced
PRICE_TABLE_VERSION: Final = "itertrack.price_table.version"
CACHE_WRITE_5M_TOKENS: Final = "itertrack.usage.cache_write_5m.input_tokens"
CACHE_WRITE_1H_TOKENS: Final = "itertrack.usage.cache_write_1h.input_tokens"
USAGE_UNKNOWN: Final = "itertrack.usage.unknown"  # the response reported no usage
DURATION_KNOWN: Final = "itertrack.call.duration_known"  # False: the span has no length (end = start)
BATCH: Final = "itertrack.call.batch"
INFERENCE_GEO: Final = "itertrack.call.inference_geo"

# -- Langfuse's OTLP ingestion ---------------------------------------------------------------------------------
# Langfuse takes this JSON over every `gen_ai.usage.*` attribute. Without it, it maps each `gen_ai.usage.*` name to
# a usage type of its own: `input` (which the conventions make include the cache) plus `cache_read.input_tokens`
# and `cache_creation.input_tokens` again, so cached tokens are counted twice and priced at the input rate.
LANGFUSE_OBSERVATION_TYPE: Final = "langfuse.observation.type"
LANGFUSE_USAGE_DETAILS: Final = "langfuse.observation.usage_details"
LANGFUSE_COST_DETAILS: Final = "langfuse.observation.cost_details"
# The usage types of Langfuse's price table for Claude models (input without the cache, as Anthropic reports it).
LANGFUSE_INPUT: Final = "input"
LANGFUSE_OUTPUT: Final = "output"
LANGFUSE_CACHE_READ: Final = "input_cache_read"
LANGFUSE_CACHE_WRITE_5M: Final = "input_cache_creation"
LANGFUSE_CACHE_WRITE_1H: Final = "input_cache_creation_1h"
LANGFUSE_TOTAL: Final = "total"

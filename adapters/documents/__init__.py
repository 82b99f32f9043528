"""One JSON vocabulary for every `--json` output and `/api/` answer: the envelope (envelope.py), the shared value
types (types.py) and each document's pydantic model, whose JSON Schema is published in schemas/."""

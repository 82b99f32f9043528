"""LLM adapters: Claude's Messages API behind the domain's StrategyLLM port."""

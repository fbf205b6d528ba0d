"""The search service over a published index: `reelhash serve` (docs/serving.md)."""

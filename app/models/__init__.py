"""Pure data, frozen pydantic models: the values that flow through the pipeline."""

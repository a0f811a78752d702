"""What an answer must be: JSON for a schema, or text and calls to given tools."""

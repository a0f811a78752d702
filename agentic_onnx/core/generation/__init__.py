"""Running a model: the engine, requests, events, responses, prefix caches, vision."""

"""Using a trained model: terminal chat and an OpenAI-compatible server."""

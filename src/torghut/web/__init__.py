"""The operator's surface over HTTP: bearer-token checks, the page at `/` and its assets."""

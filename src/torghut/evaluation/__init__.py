"""`torghut llm eval`: whether the review gate's verdicts were right, measured on what the
prices did next (forward returns of reviewed decisions, signed by side, net of costs)."""
